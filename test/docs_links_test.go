package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// The README and docs/ link only to files inside the repository, and every
// such link resolves: a fresh clone is all a reader has.
func TestDocsLinkInsideRepository(t *testing.T) {
	root, _ := filepath.Abs(repoFile())
	files, _ := filepath.Glob(repoFile("docs", "*.md"))
	files = append(files, repoFile("README.md"))
	link := regexp.MustCompile(`\]\(([^)#\s]+)(#[^)]*)?\)`)
	outside := regexp.MustCompile("`\\.\\./[^`]*`")
	for _, f := range files {
		text := readFile(t, f)
		name, _ := filepath.Rel(root, f)
		for _, m := range outside.FindAllString(text, -1) {
			t.Errorf("%s names %s, outside the repository", name, m)
		}
		for _, m := range link.FindAllStringSubmatch(text, -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			abs, _ := filepath.Abs(filepath.Join(filepath.Dir(f), target))
			if rel, err := filepath.Rel(root, abs); err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s links %s, outside the repository", name, target)
				continue
			}
			if _, err := os.Stat(abs); err != nil {
				t.Errorf("%s links %s, which does not exist", name, target)
			}
		}
	}
}
