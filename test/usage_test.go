package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// usageVector is one file of testdata/usage: bad settings, named by their
// outcome, that must fail with the exit code and phrases it lists. Lines:
// "env: K=V", "args: ..." (split on spaces; {home} and {tmp} are replaced),
// "exit: N", "want: phrase"; "#" starts a comment.
type usageVector struct {
	name      string
	env, args []string
	exit      int
	want      []string
}

func usageVectors(t *testing.T, home, tmp string) []usageVector {
	t.Helper()
	files, err := filepath.Glob("testdata/usage/*.txt")
	if err != nil || len(files) < 10 {
		t.Fatalf("usage vectors: %d files (%v)", len(files), err)
	}
	subst := strings.NewReplacer("{home}", home, "{tmp}", tmp)
	var vs []usageVector
	for _, f := range files {
		v := usageVector{name: strings.TrimSuffix(filepath.Base(f), ".txt"), exit: -1}
		if !strings.HasPrefix(v.name, "refuse_") {
			t.Fatalf("%s: the name must start with its expected outcome (refuse_)", f)
		}
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			key, val, ok := strings.Cut(line, ": ")
			switch {
			case strings.HasPrefix(line, "#") || strings.TrimSpace(line) == "":
			case ok && key == "env":
				v.env = append(v.env, subst.Replace(val))
			case ok && key == "args":
				v.args = strings.Fields(subst.Replace(val))
			case ok && key == "exit":
				if v.exit, err = strconv.Atoi(val); err != nil {
					t.Fatalf("%s: exit %q", f, val)
				}
			case ok && key == "want":
				v.want = append(v.want, val)
			default:
				t.Fatalf("%s: cannot read line %q", f, line)
			}
		}
		if len(v.args) == 0 || v.exit < 1 || len(v.want) == 0 {
			t.Fatalf("%s needs args, a non-zero exit and at least one want", f)
		}
		vs = append(vs, v)
	}
	return vs
}

// check runs the vector and asserts its exit code and phrases.
func (v usageVector) check(t *testing.T, joblet string) harness.Result {
	t.Helper()
	r := harness.Run(t, harness.Env(v.env...), joblet, v.args...)
	if r.Code != v.exit {
		t.Errorf("%s: exit %d, want %d\n%s", v.name, r.Code, v.exit, r)
	}
	for _, w := range v.want {
		if !strings.Contains(r.Stderr, w) {
			t.Errorf("%s: stderr does not mention %q:\n%s", v.name, w, r.Stderr)
		}
	}
	return r
}

// On a fresh machine each vector fails and writes nothing at all.
func TestUsageVectors(t *testing.T) {
	joblet, _ := harness.Bins(t)
	tmp := t.TempDir()
	for _, v := range usageVectors(t, filepath.Join(tmp, "home"), tmp) {
		t.Run(v.name, func(t *testing.T) {
			r := v.check(t, joblet)
			entries, _ := os.ReadDir(tmp)
			for _, e := range entries {
				t.Errorf("the refused run wrote %s", e.Name())
			}
			reliability.Record(t, "bad input", "settings: "+strings.ReplaceAll(strings.TrimPrefix(v.name, "refuse_"), "_", " ")+" ("+strings.Join(append(v.env, v.args...), " ")+")",
				"exit "+strconv.Itoa(r.Code)+": "+lastLine(r.Stderr)+"; nothing written")
		})
	}
}
