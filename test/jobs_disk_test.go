package test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// Through the real joblet and rnx (issue 23): a job writing past
// --max-disk fails with ENOSPC and leaves nothing on the node's disk; a
// limit above jobs.diskMax is refused naming the key; and after the server
// is killed with SIGKILL, the next one removes the work dirs and cgroups it
// left, and says so.
func TestJobDiskAndKilledServerEndToEnd(t *testing.T) {
	joblet, rnx := harness.Bins(t)
	home, err := os.MkdirTemp("/var/tmp", "joblet-e2e-disk-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	port := harness.FreePort(t)
	env := harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(port))
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	cfg := filepath.Join(home, "config", "joblet-config.yml")
	dev := filepath.Join(home, "config", "rnx-config-developer.yml")
	serve := func() *harness.Proc {
		srv := harness.Start(t, env, joblet, "server", "--config", cfg)
		harness.Eventually(t, 20*time.Second, "node serving", func() error {
			if r := harness.Run(t, env, rnx, "--config", dev, "info"); r.Code != 0 {
				return errors.New(r.String())
			}
			return nil
		})
		return srv
	}
	srv := serve()

	r := harness.Run(t, env, rnx, "--config", dev, "job", "run", "--follow", "--max-disk", "8M", "--",
		"sh", "-c", "head -c 100M /dev/zero > big; echo rc=$?; du -sk big")
	if r.Code != 0 || !strings.Contains(r.Stderr, "No space left on device") || !strings.Contains(r.Stdout, "rc=1") {
		t.Fatalf("a job writing past --max-disk 8M: %s", r)
	}
	if r := harness.Run(t, env, rnx, "--config", dev, "job", "run", "--max-disk", "1G", "true"); r.Code == 0 || !strings.Contains(r.Stderr, "jobs.diskMax") {
		t.Fatalf("--max-disk above the node's ceiling: %s", r)
	}

	id := strings.TrimSpace(harness.MustRun(t, env, rnx, "--config", dev, "job", "run", "sleep", "600").Stdout)
	dirs, _ := filepath.Glob(filepath.Join(home, "jobs", "run-*", id))
	if len(dirs) != 1 {
		t.Fatalf("job %s's work dir under %s/jobs: %v", id, home, dirs)
	}
	if groups := cgroupsNamed(t, id); len(groups) == 0 {
		t.Fatalf("job %s has no cgroup", id)
	}
	pid := srv.Cmd.Process.Pid
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 10*time.Second, "the killed server reaped", func() error {
		if syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("pid %d still there", pid)
		}
		return nil
	})
	left := cgroupsNamed(t, id)
	if _, err := os.Stat(dirs[0]); err != nil || len(left) == 0 {
		t.Fatalf("the killed server left no work dir (%v) or no cgroup (%v): nothing to prove", err, left)
	}

	srv = serve()
	if _, err := os.Stat(dirs[0]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the killed server's work dir %s remains: %v", dirs[0], err)
	}
	if g := cgroupsNamed(t, id); len(g) > 0 {
		t.Errorf("the killed server's cgroups remain: %v", g)
	}
	for _, want := range append([]string{"removed what a server that ended without cleaning up left", filepath.Dir(dirs[0])}, left...) {
		if !strings.Contains(srv.Output(), want) {
			t.Errorf("the restarted server's log lacks %q:\n%s", want, srv.Output())
		}
	}
}

// cgroupsNamed lists the cgroup directories named id, in every hierarchy.
func cgroupsNamed(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == id {
			out = append(out, p)
		}
		return nil
	})
	return out
}
