package test

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// jobsNode bootstraps a node as root with full isolation and the given
// jobs: section, and returns the env and an rnx runner per role.
func jobsNode(t *testing.T, jobsYAML string, srvExtraEnv ...string) (env []string, rnx func(role string, args ...string) harness.Result) {
	joblet, rnxBin := harness.Bins(t)
	home, err := os.MkdirTemp("/var/tmp", "joblet-e2e-api-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	port := harness.FreePort(t)
	env = harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(port))
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	cfg := filepath.Join(home, "config", "joblet-config.yml")
	f, err := os.OpenFile(cfg, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("jobs:\n" + jobsYAML); err != nil {
		t.Fatal(err)
	}
	f.Close()
	srv := harness.Start(t, append(append([]string{}, env...), srvExtraEnv...), joblet, "server", "--config", cfg)
	rnx = func(role string, args ...string) harness.Result {
		return harness.Run(t, env, rnxBin, append([]string{"--config", filepath.Join(home, "config", "rnx-config-"+role+".yml")}, args...)...)
	}
	harness.Eventually(t, 10*time.Second, "node serving", func() error {
		if r := rnx("developer", "info"); r.Code != 0 {
			return fmt.Errorf("%s\nserver:\n%s", r, srv.Output())
		}
		return nil
	})
	return env, rnx
}

// Phase 2 of issue 12 through the real server and rnx: per-job limits and
// their reason, the ceiling, the environment, paging, the isolation in
// rnx info.
func TestJobsAPIEndToEnd(t *testing.T) {
	_, rnx := jobsNode(t, "  memoryMax: 256M\n  listPageMax: 3\n", "JOBLET_E2E_MARKER=marker-var-api")

	// A memory hog at --max-memory 64M ends FAILED, and says why.
	r := rnx("developer", "job", "run", "--follow", "--max-memory", "64M", "--", "sh", "-c", "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done")
	if r.Code != 137 || !strings.Contains(r.Stderr, "failed: killed at its memory limit (64 MiB)") {
		t.Fatalf("memory hog: %s", r)
	}
	id := strings.Fields(strings.TrimPrefix(r.Stderr, "job "))[0]
	st := rnx("developer", "job", "status", id)
	if !strings.Contains(st.Stdout, "status:      FAILED") || !strings.Contains(st.Stdout, "reason:      killed at its memory limit (64 MiB)") ||
		!strings.Contains(st.Stdout, "limits:      memory 64 MiB, cpu 100%, procs 256") {
		t.Fatalf("status of the hog:\n%s", st)
	}

	// Above the node's ceiling: refused, naming the key.
	r = rnx("developer", "job", "run", "--max-memory", "1G", "true")
	if r.Code == 0 || !strings.Contains(r.Stderr, "ResourceExhausted") || !strings.Contains(r.Stderr, "jobs.memoryMax") || !strings.Contains(r.Stderr, "256 MiB") {
		t.Fatalf("above the ceiling: %s", r)
	}

	// --env reaches the job, and nothing of the server's environment does.
	r = rnx("developer", "job", "run", "--follow", "--env", "FOO=bar", "--env", "SPACED=a b,c", "env")
	if r.Code != 0 || !strings.Contains(r.Stdout, "\nFOO=bar\n") && !strings.HasPrefix(r.Stdout, "FOO=bar\n") || !strings.Contains(r.Stdout, "SPACED=a b,c\n") {
		t.Fatalf("env job: %s", r)
	}
	for _, line := range strings.Split(strings.TrimSpace(r.Stdout), "\n") {
		k, _, _ := strings.Cut(line, "=")
		if !map[string]bool{"FOO": true, "SPACED": true, "PATH": true, "HOME": true, "LANG": true}[k] {
			t.Errorf("the job's environment holds %q", line)
		}
	}

	// rnx info shows the isolation in force.
	if r = rnx("reader", "info"); !strings.Contains(r.Stdout, "jobs:      full (uid ") || !strings.Contains(r.Stdout, "network none") {
		t.Fatalf("info:\n%s", r)
	}

	// More jobs than a page (3): job list returns them all, in order; --limit stops early.
	var want []string
	for _, rec := range listJSON(t, rnx("developer", "job", "list", "--json")) {
		want = append(want, rec.ID)
	}
	for i := 0; i < 5; i++ {
		want = append(want, strings.TrimSpace(rnx("developer", "job", "run", "echo", strconv.Itoa(i)).Stdout))
	}
	var got []string
	for _, rec := range listJSON(t, rnx("reader", "job", "list", "--json")) {
		got = append(got, rec.ID)
		if rec.Limits == nil || rec.Limits.MemoryBytes == 0 || !rec.ArgsHidden || len(rec.Args) != 0 {
			t.Errorf("a reader sees job %+v", rec)
		}
	}
	if len(want) <= 3 || strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("job list over pages of 3:\n%v\nwant\n%v", got, want)
	}
	if lim := listJSON(t, rnx("developer", "job", "list", "--json", "--limit", "4")); len(lim) != 4 || lim[3].ID != want[3] {
		t.Fatalf("--limit 4: %+v", lim)
	}
	if table := rnx("developer", "job", "list").Stdout; strings.Count(table, "\n") != len(want)+1 {
		t.Fatalf("job list table:\n%s", table)
	}
}

type listedJob struct {
	ID         string   `json:"id"`
	Args       []string `json:"args"`
	ArgsHidden bool     `json:"argsHidden"`
	Reason     string   `json:"reason"`
	Limits     *struct {
		MemoryBytes int64 `json:"memoryBytes"`
	} `json:"limits"`
}

func listJSON(t *testing.T, r harness.Result) []listedJob {
	t.Helper()
	var out []listedJob
	if r.Code != 0 || json.Unmarshal([]byte(r.Stdout), &out) != nil {
		t.Fatalf("job list --json: %s", r)
	}
	return out
}

// The roles table of docs/JOBS.md with the per-role rnx configs: a reader
// and a developer see the status of an admin's job but not its arguments
// or output, and the developer cannot stop it; the maintainer can.
func TestJobRolesWithRnx(t *testing.T) {
	_, rnx := jobsNode(t, "")
	id := strings.TrimSpace(rnx("admin", "job", "run", "sh", "-c", "echo token-of-admin; sleep 120").Stdout)
	harness.Eventually(t, 5*time.Second, "the admin's job printed", func() error {
		if r := rnx("admin", "job", "log", id); !strings.Contains(r.Stdout, "token-of-admin") {
			return errors.New(r.String())
		}
		return nil
	})
	for _, role := range []string{"reader", "developer"} {
		st := rnx(role, "job", "status", id)
		if st.Code != 0 || !strings.Contains(st.Stdout, "RUNNING") || strings.Contains(st.Stdout, "token-of-admin") ||
			!strings.Contains(st.Stdout, "(arguments hidden from your role)") {
			t.Errorf("%s status of the admin's job: %s", role, st)
		}
		if r := rnx(role, "job", "log", id); r.Code == 0 || strings.Contains(r.Stdout, "token-of-admin") || !strings.Contains(r.Stderr, "PermissionDenied") {
			t.Errorf("%s log of the admin's job: %s", role, r)
		}
		if r := rnx(role, "job", "stop", id); r.Code == 0 || !strings.Contains(r.Stderr, "PermissionDenied") {
			t.Errorf("%s stop of the admin's job: %s", role, r)
		}
	}
	// The developer's own job: output and stop.
	dev := rnx("developer", "job", "run", "--follow", "echo", "mine")
	if dev.Code != 0 || dev.Stdout != "mine\n" {
		t.Errorf("developer's own job: %s", dev)
	}
	if r := rnx("maintainer", "job", "stop", id); r.Code != 0 || !strings.Contains(r.Stdout, "STOPPED") || !strings.Contains(r.Stdout, "token-of-admin") {
		t.Fatalf("maintainer stop of the admin's job: %s", r)
	}
}
