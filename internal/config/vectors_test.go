package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
)

// The vectors in testdata/ say their expected outcome in their names:
// good_* parse, fail_* are refused with an error.
func TestServerConfigVectors(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.yml")
	if len(files) < 5 {
		t.Fatalf("only %d vectors", len(files))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseServer(b)
			switch {
			case strings.HasPrefix(name, "good_") && err != nil:
				t.Fatalf("refused: %v", err)
			case strings.HasPrefix(name, "fail_") && err == nil:
				t.Fatal("accepted")
			case err != nil:
				reliability.Record(t, "bad input", "server config file "+name, "refused: "+err.Error())
			}
		})
	}
}

func TestExposedKeyWarning(t *testing.T) {
	p := filepath.Join(t.TempDir(), "c.yml")
	os.WriteFile(p, []byte("x"), 0o600)
	if w := ExposedKeyWarning(p); w != "" {
		t.Fatalf("0600 warned: %s", w)
	}
	os.Chmod(p, 0o644)
	w := ExposedKeyWarning(p)
	if !strings.Contains(w, "chmod 600") || !strings.Contains(w, "0644") {
		t.Fatalf("0644: %q", w)
	}
	reliability.Record(t, "bad input", "a config file with keys readable by others (0644)", "warning: "+w)
}

func FuzzParseServer(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.yml")
	for _, p := range files {
		b, _ := os.ReadFile(p)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := ParseServer(b)
		if err == nil && (s.Server.Port <= 0 || s.Server.Port > 65535 || s.Security.ServerKey == "") {
			t.Fatalf("accepted an invalid config: %+v", s)
		}
	})
}

func FuzzParseRnx(f *testing.F) {
	f.Add([]byte("version: \"3.0\"\nnodes: {default: {address: h:1, cert: c, key: k, ca: a, isDefault: true}}\n"))
	f.Add([]byte("version: \"3.0\"\nnodes: {}\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRnx(b)
		if err != nil {
			return
		}
		if _, _, err := r.Select(""); err != nil && len(r.Nodes) == 1 && r.Nodes[r.NodeNames()[0]].IsDefault {
			t.Fatalf("a config with one default node cannot select it: %v", err)
		}
	})
}
