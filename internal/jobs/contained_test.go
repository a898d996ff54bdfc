package jobs

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// contained is a Manager with full isolation; this node must provide it
// (CI runs as root): a missing feature fails the test with the reason.
func contained(t *testing.T, o Options) *Manager {
	t.Helper()
	o.JobsDir = filepath.Join(t.TempDir(), "jobs")
	o.Grace = cmpOr(o.Grace, 200*time.Millisecond)
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if m.unavailable != nil {
		t.Fatalf("this node cannot contain jobs: %v", m.unavailable)
	}
	t.Cleanup(func() { m.Shutdown(context.Background()) })
	return m
}

func TestContainedJobRunsUnprivileged(t *testing.T) {
	m := contained(t, Options{})
	s, err := m.Run("sh", []string{"-c", "id -u; echo $HOME; pwd"}, "developer")
	if err != nil {
		t.Fatal(err)
	}
	d := waitDone(t, m, s.ID)
	out := strings.Fields(logs(t, m, s.ID, false))
	if d.Status != Completed || d.Reason != "exit code 0" || len(out) != 3 || out[0] == "0" || out[1] != out[2] {
		t.Fatalf("%+v %q", d, out)
	}
	if !strings.HasPrefix(out[1], m.opts.JobsDir+"/") {
		t.Fatalf("work dir %s is not under the jobs dir %s", out[1], m.opts.JobsDir)
	}
	if !strings.Contains(m.Isolation(), "full") {
		t.Fatalf("isolation %q", m.Isolation())
	}
}

func TestContainedStopTakesDetachedProcesses(t *testing.T) {
	m := contained(t, Options{})
	s, err := m.Run("sh", []string{"-c", "setsid sleep 778 & echo up; sleep 600"}, "developer")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 500 && logs(t, m, s.ID, false) == ""; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	st, err := m.Stop(context.Background(), s.ID)
	if err != nil || st.Status != Stopped || st.Reason != "stopped" {
		t.Fatalf("%+v %v", st, err)
	}
	for t0 := time.Now(); time.Since(t0) < 3*time.Second; time.Sleep(20 * time.Millisecond) {
		if !hostRuns("sleep\x00778\x00") {
			return
		}
	}
	t.Fatal("`sleep 778` survived Stop")
}

func hostRuns(cmdline string) bool {
	files, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range files {
		if b, _ := os.ReadFile(f); string(b) == cmdline {
			return true
		}
	}
	return false
}

func TestContainedMemoryLimitIsTheReason(t *testing.T) {
	m := contained(t, Options{Default: Limits{MemoryBytes: 64 << 20}})
	s, err := m.Run("sh", []string{"-c", "x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done"}, "developer")
	if err != nil {
		t.Fatal(err)
	}
	d := waitDone(t, m, s.ID)
	if d.Status != Failed || d.Reason != "killed at its memory limit (64 MiB)" {
		t.Fatalf("%+v", d)
	}
}

func TestCapsRefuseWithErrLimit(t *testing.T) {
	m := contained(t, Options{MaxRunning: 1, MaxKept: 1, MaxRequestBytes: 100, Max: Limits{MemoryBytes: 1 << 30}})
	long, err := m.Run("sleep", []string{"600"}, "developer")
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		r    Request
		want string
	}{
		"running": {Request{Command: "true"}, "jobs.maxRunning"},
		"size":    {Request{Command: "echo", Args: []string{strings.Repeat("x", 101)}}, "jobs.maxRequestBytes"},
		"memory":  {Request{Command: "true", Limits: Limits{MemoryBytes: 2 << 30}}, "jobs.memoryMax"},
		"cpu":     {Request{Command: "true", Limits: Limits{CPUPercent: 101}}, "jobs.cpuMax"},
		"procs":   {Request{Command: "true", Limits: Limits{MaxProcs: 100000}}, "jobs.procsMax"},
		"disk":    {Request{Command: "true", Limits: Limits{DiskBytes: DefaultDisk + 1}}, "jobs.diskMax"},
	} {
		if _, err := m.Start(tc.r); !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want ErrLimit naming %s", name, err, tc.want)
		}
	}
	m.Stop(context.Background(), long.ID)
	// Finished jobs beyond MaxKept go, with their work dirs.
	var dirs []string
	for i := 0; i < 3; i++ {
		s, err := m.Run("true", nil, "developer")
		if err != nil {
			t.Fatal(err)
		}
		waitDone(t, m, s.ID)
		j, _ := m.get(s.ID)
		dirs = append(dirs, j.dir)
	}
	time.Sleep(50 * time.Millisecond) // the last wait evicts after recording the end
	if l := m.List(); len(l) != 1 {
		t.Fatalf("kept %d jobs, want 1", len(l))
	}
	for _, d := range dirs[:2] {
		if _, err := os.Stat(d); !os.IsNotExist(err) {
			t.Errorf("an evicted job's work dir %s is still there: %v", d, err)
		}
	}
}

func TestOptionsDefaultsFollowCeilings(t *testing.T) {
	o := Options{Max: Limits{MemoryBytes: 128 << 20, CPUPercent: 400}}
	o.fill()
	if o.Default.MemoryBytes != 128<<20 || o.Default.CPUPercent != DefaultCPUPercent || o.Max.MaxProcs != DefaultMaxProcs {
		t.Fatalf("%+v %+v", o.Default, o.Max)
	}
	if _, err := New(Options{Isolation: IsolationNone, Default: Limits{CPUPercent: 300}, Max: Limits{CPUPercent: 200}}); err == nil {
		t.Fatal("a default above its ceiling was accepted")
	}
}

// SIGTERM reaches the command (the sandbox's init forwards it), so a plain
// `sleep` stops at once instead of at the end of the grace period.
func TestContainedStopTermsTheCommand(t *testing.T) {
	m := contained(t, Options{Grace: 10 * time.Second})
	s, err := m.Run("sleep", []string{"600"}, "developer")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	t0 := time.Now()
	st, err := m.Stop(context.Background(), s.ID)
	if err != nil || st.Status != Stopped || time.Since(t0) > 3*time.Second {
		t.Fatalf("%+v %v after %s", st, err, time.Since(t0))
	}
}

// A job's disk limit, from the request or the node's default, is where its
// writes stop with ENOSPC; the job goes on and says so.
func TestContainedDiskLimitIsENOSPC(t *testing.T) {
	m := contained(t, Options{Default: Limits{DiskBytes: 8 << 20}, Max: Limits{DiskBytes: 64 << 20}})
	for _, tc := range []struct {
		lim  Limits
		want int64 // KiB
	}{{Limits{}, 8 << 10}, {Limits{DiskBytes: 16 << 20}, 16 << 10}} {
		s, err := m.Start(Request{Command: "sh", Args: []string{"-c", "head -c 100M /dev/zero > big; echo rc=$?; du -sk big | cut -f1"}, Limits: tc.lim})
		if err != nil {
			t.Fatal(err)
		}
		d := waitDone(t, m, s.ID)
		out, errOut := streams(t, m, s.ID, false)
		if d.Status != Completed || d.Limits.DiskBytes == 0 || !strings.Contains(errOut, "No space left on device") || !strings.Contains(out, "rc=1") {
			t.Fatalf("%+v\n%s%s", d, out, errOut)
		}
		// The file is the limit, less the tmpfs's own few blocks.
		f := strings.Fields(out)
		if kib, _ := strconv.ParseInt(f[len(f)-1], 10, 64); kib > tc.want || kib < tc.want*9/10 {
			t.Errorf("limit %+v: the job wrote %d KiB, want about %d", tc.lim, kib, tc.want)
		}
	}
}

// All jobs together are bounded by jobs.memoryTotal: by default 75% of the
// node's RAM (read once, at New), and the server warns at start when
// maxRunning jobs at memoryMax need more.
func TestMemoryTotalDefaultAndWarning(t *testing.T) {
	var si syscall.Sysinfo_t
	if err := syscall.Sysinfo(&si); err != nil {
		t.Fatal(err)
	}
	ram := int64(si.Totalram) * int64(si.Unit)
	m := contained(t, Options{})
	if got := m.opts.MemoryTotal; got != ram*DefaultMemoryShare/100 {
		t.Fatalf("default memoryTotal %d, want 75%% of %d", got, ram)
	}
	var log bytes.Buffer
	contained(t, Options{MaxRunning: 4, Max: Limits{MemoryBytes: 1 << 30}, MemoryTotal: 2 << 30, Log: slog.New(slog.NewTextHandler(&log, nil))})
	if !strings.Contains(log.String(), "level=WARN") || !strings.Contains(log.String(), `together="4 GiB" memoryTotal="2 GiB"`) {
		t.Fatalf("no warning for 4 x 1 GiB over a 2 GiB total:\n%s", log.String())
	}
	log.Reset()
	contained(t, Options{MaxRunning: 2, Max: Limits{MemoryBytes: 1 << 30}, MemoryTotal: 2 << 30, Log: slog.New(slog.NewTextHandler(&log, nil))})
	if strings.Contains(log.String(), "memoryTotal") {
		t.Fatalf("a warning for 2 x 1 GiB within a 2 GiB total:\n%s", log.String())
	}
}
