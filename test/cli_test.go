package test

import (
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/test/harness"
)

// The built binary: completion scripts, help and version need no config
// or store; bad usage exits 2 with a short usage.
func TestJobletCLISurface(t *testing.T) {
	joblet, _ := harness.Bins(t)
	env := harness.Env("JOBLET_HOME=" + t.TempDir() + "/none")
	r := harness.MustRun(t, env, joblet, "completion", "bash")
	if !strings.Contains(r.Stdout, "# bash completion V2 for joblet") || !strings.Contains(r.Stdout, "complete -o default -F __start_joblet joblet") {
		t.Fatalf("completion bash:\n%.300s", r.Stdout)
	}
	for _, args := range [][]string{{"--help"}, {"certs", "--help"}, {"certs", "rotate-ca", "--help"}, {"version"}, {"--version"}} {
		if r := harness.MustRun(t, env, joblet, args...); r.Stdout == "" {
			t.Errorf("%v printed nothing", args)
		}
	}
	r = harness.Run(t, env, joblet, "certs", "status", "--jsn")
	if r.Code != 2 || strings.Count(r.Stderr, "\n") >= 10 || !strings.Contains(r.Stderr, "did you mean --json?") || !strings.Contains(r.Stderr, "joblet certs status --help") {
		t.Fatalf("unknown flag:\n%s", r)
	}
}
