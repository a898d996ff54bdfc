package jobs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// killedServerEnv makes this test binary a server that starts one job in
// the jobs dir it names, prints the job's id and work dir, and waits to be
// killed.
const killedServerEnv = "JOBLET_TEST_KILLED_SERVER_JOBS_DIR"

func init() {
	dir := os.Getenv(killedServerEnv)
	if dir == "" {
		return
	}
	m, err := New(Options{JobsDir: dir})
	if err == nil && m.unavailable != nil {
		err = m.unavailable
	}
	var s Snapshot
	if err == nil {
		s, err = m.Run("sleep", []string{"600"}, "test")
	}
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(2)
	}
	m.mu.Lock()
	fmt.Println(s.ID, m.jobs[s.ID].dir)
	m.mu.Unlock()
	select {}
}

// cgroupsOf lists the cgroup directories named id, in every hierarchy.
func cgroupsOf(t *testing.T, id string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("/sys/fs/cgroup", func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() && d.Name() == id {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) { l.mu.Lock(); defer l.mu.Unlock(); return l.b.Write(p) }
func (l *syncLog) String() string              { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// A server killed with SIGKILL leaves its jobs' work dirs and cgroups; the
// next server on the same jobs dir removes them at start and logs it, and
// leaves alone those of a server still running there.
func TestRestartSweepsWhatAKilledServerLeft(t *testing.T) {
	jobsDir := filepath.Join(t.TempDir(), "jobs")
	live, err := New(Options{JobsDir: jobsDir, Grace: 100 * time.Millisecond})
	if err != nil || live.unavailable != nil {
		t.Fatalf("this node cannot contain jobs: %v %v", err, live.unavailable)
	}
	t.Cleanup(func() { live.Shutdown(context.Background()) })
	liveJob, err := live.Run("sleep", []string{"600"}, "test")
	if err != nil {
		t.Fatal(err)
	}

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), killedServerEnv+"="+jobsDir)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.HasPrefix(line, "ERROR") {
		cmd.Process.Kill()
		t.Fatalf("the server did not start its job: %q %v", line, err)
	}
	id, dir, _ := strings.Cut(strings.TrimSpace(line), " ")
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	// What the killed server left: its job's work dir and cgroups (empty:
	// the job died with it).
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("the killed server's work dir %s: %v", dir, err)
	}
	var left []string
	for deadline := time.Now().Add(10 * time.Second); len(left) == 0 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		left = cgroupsOf(t, id)
	}
	if len(left) == 0 {
		t.Fatalf("the killed server's job %s left no cgroup: nothing to prove", id)
	}

	// A work dir from before runs existed goes too; what joblet did not
	// make stays, whatever it is called.
	legacy, foreign := filepath.Join(jobsDir, "0123456789ab"), []string{filepath.Join(jobsDir, "keep-me"), filepath.Join(jobsDir, "run-notours"), filepath.Join(jobsDir, "0123456789ab-x")}
	for _, d := range append(foreign, legacy) {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(jobsDir, "notes.lock"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	foreign = append(foreign, filepath.Join(jobsDir, "notes.lock"))

	log := &syncLog{}
	restarted, err := New(Options{JobsDir: jobsDir, Log: slog.New(slog.NewTextHandler(log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { restarted.Shutdown(context.Background()) })
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Errorf("the killed server's work dir %s remains: %v", dir, err)
	}
	if cg := cgroupsOf(t, id); len(cg) > 0 {
		t.Errorf("the killed server's cgroups remain: %v", cg)
	}
	for _, want := range append([]string{"removed what a server that ended without cleaning up left", filepath.Dir(dir)}, left...) {
		if !strings.Contains(log.String(), want) {
			t.Errorf("the log does not say %q:\n%s", want, log.String())
		}
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Errorf("a work dir from before runs existed remains: %v", err)
	}
	for _, f := range foreign {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("the sweep removed %s, which joblet did not make: %v", f, err)
		}
	}
	// The live server's job is untouched.
	if s, err := live.Status(liveJob.ID); err != nil || s.Status != Running {
		t.Fatalf("the live server's job: %+v %v", s, err)
	}
	live.mu.Lock()
	liveDir := live.jobs[liveJob.ID].dir
	live.mu.Unlock()
	if _, err := os.Stat(liveDir); err != nil || len(cgroupsOf(t, liveJob.ID)) == 0 {
		t.Fatalf("the live server's work dir or cgroup was swept: %v", err)
	}
}
