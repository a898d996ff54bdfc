package test

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// A job started by the developer role, through the real server and rnx,
// reaches none of the node's keys, credentials, processes or services
// (issue 12). The node runs as root with full isolation, as CI does: a
// kernel that cannot provide it fails the test with the server's reason.
func TestJobsContainedEndToEnd(t *testing.T) {
	joblet, rnx := harness.Bins(t)
	// Not under /tmp: the job's /tmp is its own, which would hide the home
	// whether or not it is masked.
	home, err := os.MkdirTemp("/var/tmp", "joblet-e2e-home-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(home) })
	port := harness.FreePort(t)
	env := harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(port))
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	// The server holds credentials a job must never see.
	srvEnv := append(env, "AWS_ACCESS_KEY_ID=AKIAJOBMARKER", "AWS_SECRET_ACCESS_KEY=marker-secret-e2e", "JOBLET_E2E_MARKER=marker-var-e2e")
	srv := harness.Start(t, srvEnv, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	dev := filepath.Join(home, "config", "rnx-config-developer.yml")
	harness.Eventually(t, 10*time.Second, "node serving", func() error {
		if r := harness.Run(t, env, rnx, "--config", dev, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})

	// Every file of the node's home and config, world-readable or not.
	var secrets []string
	filepath.WalkDir(home, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			secrets = append(secrets, p)
		}
		return nil
	})
	if len(secrets) < 5 {
		t.Fatalf("bootstrap left only %v in %s", secrets, home)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	listener := l.Addr().(*net.TCPAddr).Port
	server := srv.Cmd.Process.Pid

	script := fmt.Sprintf(`echo uid=$(id -u)
env | sed 's/^/env:/'
for f in "$@"; do cat "$f" >/dev/null 2>&1 && echo "READ $f"; done
ls /proc/%[1]d >/dev/null 2>&1 && echo "SEES-SERVER"
kill -0 %[1]d 2>/dev/null && echo "SIGNALS-SERVER"
echo procs=$(ls /proc | grep -c '^[0-9]')
for p in %[2]d %[3]d; do bash -c "echo > /dev/tcp/127.0.0.1/$p" 2>/dev/null && echo "CONNECTED $p"; done
echo done`, server, listener, port)
	args := append([]string{"--config", dev, "job", "run", "--follow", "sh", "-c", script, "job"}, secrets...)
	r := harness.Run(t, env, rnx, args...)
	out := r.Stdout
	if r.Code != 0 || !strings.Contains(out, "\ndone\n") {
		t.Fatalf("job: %s\nserver:\n%s", r, srv.Output())
	}
	t.Logf("the developer's job printed:\n%s", out)
	if !strings.HasPrefix(out, "uid=") || strings.HasPrefix(out, "uid=0\n") {
		t.Errorf("the job ran as root:\n%s", out)
	}
	for _, line := range strings.Split(out, "\n") {
		if kv, ok := strings.CutPrefix(line, "env:"); ok {
			k, _, _ := strings.Cut(kv, "=")
			if !map[string]bool{"PATH": true, "HOME": true, "LANG": true, "PWD": true, "SHLVL": true, "_": true}[k] {
				t.Errorf("the job's environment holds %q", kv)
			}
		}
	}
	for _, bad := range []string{"READ ", "SEES-SERVER", "SIGNALS-SERVER", "CONNECTED", "marker-", "AKIAJOBMARKER"} {
		if strings.Contains(out, bad) {
			t.Errorf("the job's output holds %q:\n%s", bad, out)
		}
	}
	// sh, the $(...) subshell, ls and grep.
	if i := strings.Index(out, "procs="); i < 0 || out[i+6] < '1' || out[i+6] > '5' || out[i+7] != '\n' {
		t.Errorf("the job sees more than its own processes:\n%s", out)
	}

	// Stop takes what the job detached with setsid.
	id := strings.TrimSpace(harness.MustRun(t, env, rnx, "--config", dev, "job", "run", "sh", "-c", "setsid sleep 779 & sleep 600").Stdout)
	harness.Eventually(t, 5*time.Second, "the detached sleep up", func() error {
		if !hostRuns("sleep\x00779\x00") {
			return errors.New("not yet")
		}
		return nil
	})
	if stop := harness.MustRun(t, env, rnx, "--config", dev, "job", "stop", id).Stdout; !strings.Contains(stop, "STOPPED") {
		t.Fatalf("stop:\n%s", stop)
	}
	harness.Eventually(t, 3*time.Second, "no `sleep 779` left on the host", func() error {
		if hostRuns("sleep\x00779\x00") {
			return errors.New("still running")
		}
		return nil
	})

	// An oversized request is refused with ResourceExhausted, naming the key.
	big := harness.Run(t, env, rnx, "--config", dev, "job", "run", "echo", strings.Repeat("x", 70<<10))
	if big.Code == 0 || !strings.Contains(big.Stderr, "jobs.maxRequestBytes") || !strings.Contains(big.Stderr, "ResourceExhausted") {
		t.Fatalf("oversized request: %s", big)
	}
}

// hostRuns reports whether a process with exactly this cmdline (NUL
// separated) is in the host's process table.
func hostRuns(cmdline string) bool {
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		if b, _ := os.ReadFile(f); string(b) == cmdline {
			return true
		}
	}
	return false
}
