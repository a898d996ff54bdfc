package sandbox

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
)

// These tests run real namespaces and cgroups: CI runs as root, and a
// missing kernel feature fails them with the reason (Check's message).

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

var idSeq int

// spec is a contained spec for the job user with its own work dir.
func spec(t *testing.T, script string) Spec {
	t.Helper()
	uid, gid, note, err := JobUser("")
	if err != nil {
		t.Fatal(err)
	}
	if note != "" {
		t.Log(note)
	}
	idSeq++
	id := fmt.Sprintf("t%d-%d", os.Getpid(), idSeq)
	dir, err := MakeWorkDir(filepath.Join(t.TempDir(), "jobs"), id, uid, gid)
	if err != nil {
		t.Fatal(err)
	}
	s := Spec{ID: id, Path: "sh", Args: []string{"-c", script}, WorkDir: dir, UID: uid, GID: gid, Hide: []string{"/root"}}
	if err := Check(s); err != nil {
		t.Fatalf("this node cannot contain jobs: %v", err)
	}
	return s
}

func start(t *testing.T, s Spec) (*Process, *syncBuf) {
	t.Helper()
	out := &syncBuf{}
	p, err := Start(s, out, out)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		select {
		case <-p.Done():
		default:
			_ = p.Kill()
		}
	})
	return p, out
}

// run starts s, waits for it in the background, and returns its output and exit.
func run(t *testing.T, s Spec) (string, Exit) {
	t.Helper()
	p, out := start(t, s)
	e := p.Wait()
	return out.String(), e
}

func TestIdentityEnvironmentAndHiddenPaths(t *testing.T) {
	t.Setenv("JOBLET_SANDBOX_MARKER", "leaked")
	// Outside /tmp (the job's /tmp is its own anyway), world-readable: only
	// the mask keeps the job out.
	secret, err := os.MkdirTemp("/var/tmp", "joblet-secret-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(secret)
	os.Chmod(secret, 0o755)
	os.WriteFile(filepath.Join(secret, "key"), []byte("PRIVATE KEY"), 0o644)
	single := filepath.Join(secret, "..", filepath.Base(secret)+"-file")
	os.WriteFile(single, []byte("PRIVATE KEY"), 0o644)
	defer os.Remove(single)

	s := spec(t, `id -u; id -g; id -G; echo ENV; env; echo END; cat `+secret+`/key; cat `+single+`; echo pwd=$(pwd); hostname;
touch /usr/joblet-probe 2>/dev/null && echo ROOTFS-WRITABLE; echo hi > work.txt && cat work.txt; echo t > /tmp/t && echo tmp-ok; ls /root | wc -l`)
	s.Hide = append(s.Hide, secret, single)
	out, e := run(t, s)
	if e.Code != 0 {
		t.Fatalf("exit %+v\n%s", e, out)
	}
	lines := strings.Split(out, "\n")
	if lines[0] == "0" || lines[0] != strconv.Itoa(s.UID) || lines[1] != strconv.Itoa(s.GID) || lines[2] != strconv.Itoa(s.GID) {
		t.Fatalf("ids (want uid %d gid %d, no supplementary groups):\n%s", s.UID, s.GID, out)
	}
	env := out[strings.Index(out, "ENV\n")+4 : strings.Index(out, "END\n")]
	for _, kv := range strings.Split(strings.TrimSpace(env), "\n") {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "PATH", "HOME", "LANG", "PWD", "SHLVL", "_": // sh adds PWD, SHLVL, _
		default:
			t.Errorf("unexpected variable in the job's environment: %q", kv)
		}
	}
	for _, want := range []string{"HOME=" + s.WorkDir, "PATH=" + MinimalPath, "LANG=C.UTF-8"} {
		if !strings.Contains(env, want+"\n") {
			t.Errorf("env lacks %q:\n%s", want, env)
		}
	}
	for _, bad := range []string{"PRIVATE KEY", "leaked", "ROOTFS-WRITABLE"} {
		if strings.Contains(out, bad) {
			t.Errorf("job output holds %q:\n%s", bad, out)
		}
	}
	for _, want := range []string{"pwd=" + s.WorkDir, "job-" + s.ID, "hi\n", "tmp-ok", "\n0\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("job output lacks %q:\n%s", want, out)
		}
	}
	// The job's files live in its own tmpfs: nothing reached the node's disk.
	if b, err := os.ReadFile(filepath.Join(s.WorkDir, "work.txt")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the job wrote to the node's disk at %s: %q %v", s.WorkDir, b, err)
	}
}

func TestOwnProcessNamespace(t *testing.T) {
	out, e := run(t, spec(t, `tr '\0' ' ' </proc/1/cmdline; echo; ls /proc | grep -E '^[0-9]+$' | tr '\n' ' '; echo; kill -0 `+strconv.Itoa(os.Getpid())+` 2>&1 && echo SIGNALLED; true`))
	if e.Code != 0 {
		t.Fatalf("exit %+v\n%s", e, out)
	}
	lines := strings.Split(out, "\n")
	if lines[0] != initName+" " {
		t.Errorf("PID 1 of the job's namespace is not the sandbox's init:\n%s", out)
	}
	pids := strings.Fields(lines[1])
	if len(pids) == 0 || len(pids) > 5 {
		t.Errorf("/proc shows %d processes, want only the job's (init, sh, ls, grep): %v", len(pids), pids)
	}
	for _, p := range pids {
		if p == strconv.Itoa(os.Getpid()) && os.Getpid() > 4 {
			t.Errorf("the job sees the test process %s in /proc", p)
		}
	}
	if strings.Contains(out, "SIGNALLED") {
		t.Errorf("the job could signal a pid of the host:\n%s", out)
	}
}

func TestNetworkNoneReachesNoHostService(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := l.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	s := spec(t, fmt.Sprintf(`bash -c 'echo > /dev/tcp/127.0.0.1/%d' && echo CONNECTED; bash -c 'echo > /dev/tcp/127.0.0.1/1' 2>&1; cat /sys/class/net/lo/operstate`, port))
	out, _ := run(t, s)
	if strings.Contains(out, "CONNECTED") {
		t.Fatalf("the job connected to the host's 127.0.0.1:%d:\n%s", port, out)
	}
	select {
	case <-accepted:
		t.Fatal("the host listener accepted a connection from the job")
	case <-time.After(100 * time.Millisecond):
	}
	// Loopback is up in the job's namespace: refused, not unreachable.
	if !strings.Contains(out, "refused") {
		t.Errorf("loopback inside the job does not answer (want connection refused):\n%s", out)
	}
}

func TestKillTakesDetachedProcesses(t *testing.T) {
	s := spec(t, `setsid sleep 777 & sleep 600`)
	p, _ := start(t, s)
	waited := make(chan Exit, 1)
	go func() { waited <- p.Wait() }()
	// Until the detached sleep is up.
	deadline := time.Now().Add(5 * time.Second)
	for len(sleepers("777")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the job's `setsid sleep 777` never started")
		}
		time.Sleep(20 * time.Millisecond)
	}
	t0 := time.Now()
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	e := <-waited
	for time.Since(t0) < 3*time.Second && len(sleepers("777")) > 0 {
		time.Sleep(20 * time.Millisecond)
	}
	if left := sleepers("777"); len(left) > 0 {
		t.Fatalf("after Kill, host pids %v still run `sleep 777`", left)
	}
	t.Logf("killed in %s: %+v", time.Since(t0), e)
	if e.Signal != syscall.SIGKILL {
		t.Errorf("exit %+v, want killed", e)
	}
}

// sleepers scans the host's process table for `sleep arg`.
func sleepers(arg string) []string {
	var out []string
	dirs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, f := range dirs {
		b, _ := os.ReadFile(f)
		if string(b) == "sleep\x00"+arg+"\x00" {
			out = append(out, f)
		}
	}
	return out
}

func TestMemoryLimitKillsAndSaysSo(t *testing.T) {
	s := spec(t, `x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done`)
	s.Limits.MemoryBytes = 64 << 20
	out, e := run(t, s)
	if !e.OOMKilled || e.Code == 0 {
		t.Fatalf("exit %+v, want killed at the memory limit\n%s", e, out)
	}
}

// All jobs together are bounded by their parent group's limit
// (JobsMemory), set where the parent is created, v1 or v2: a job within its
// own limit is killed at the parent's.
func TestJobsMemoryLimitsTheParentGroup(t *testing.T) {
	l, err := readLayout()
	if err != nil {
		t.Fatal(err)
	}
	// A parent of this test's own: other test processes (internal/jobs)
	// may run jobs in the same cgroup's joblet-jobs at the same time.
	old := groupBase
	groupBase = fmt.Sprintf("joblet-jobs-t%d", os.Getpid())
	hs := []hierarchy{}
	if l.v2 != nil {
		hs = append(hs, *l.v2)
	}
	for _, h := range l.v1 {
		hs = append(hs, h)
	}
	t.Cleanup(func() {
		for _, h := range hs {
			_ = removeDir(filepath.Join(h.mount, h.self, groupBase))
		}
		groupBase = old
	})
	file := filepath.Join(l.v1["memory"].mount, l.v1["memory"].self, groupBase, "memory.limit_in_bytes")
	if l.pure {
		file = filepath.Join(l.v2.mount, l.v2.self, groupBase, "memory.max")
	}
	const total = 48 << 20
	s := spec(t, `x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done`)
	s.Limits.MemoryBytes, s.JobsMemory = 512<<20, total
	out, e := run(t, s)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(total) {
		t.Fatalf("%s is %s, want %d", file, got, total)
	}
	if !e.OOMKilled || e.Code == 0 {
		t.Fatalf("exit %+v, want killed at the jobs' total (%d bytes), below its own limit\n%s", e, total, out)
	}
}

// forkBomb forks sleepers until it cannot, says how many it got, and stays
// up (a shell would exit at its first failed fork, taking the job down).
const forkBomb = `python3 -c '
import os, time
ok = fail = 0
for i in range(200):
    try:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        ok += 1
    except OSError:
        fail += 1
print("forked", ok, "failed", fail, flush=True)
time.sleep(30)
'`

func TestProcessLimitCapsForkBomb(t *testing.T) {
	s := spec(t, forkBomb)
	s.Limits.MaxProcs = 20
	p, out := start(t, s)
	go p.Wait()
	most := 0
	for t0 := time.Now(); time.Since(t0) < 10*time.Second && !strings.Contains(out.String(), "forked"); time.Sleep(20 * time.Millisecond) {
		most = max(most, len(p.cg.pids()))
	}
	// The node keeps answering: it still forks and runs commands.
	t0 := time.Now()
	if err := exec.Command("true").Run(); err != nil || time.Since(t0) > 2*time.Second {
		t.Fatalf("the host could not run `true` during the bomb: %v in %s", err, time.Since(t0))
	}
	most = max(most, len(p.cg.pids()))
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	var ok, fail int
	fmt.Sscanf(strings.TrimSpace(out.String()), "forked %d failed %d", &ok, &fail)
	// The job's tasks (sh, python, its children) stay within the limit plus
	// the initSlack kept for the init (PID 1, on top of the limit).
	if fail == 0 || 2+ok > 20+initSlack || most-1 > 20+initSlack {
		t.Fatalf("limit 20: forked %d, failed %d, at most %d processes at once; output %q", ok, fail, most, out)
	}
	t.Logf("limit 20: forked %d, failed %d, at most %d processes at once", ok, fail, most)
}

func TestCPULimitHolds(t *testing.T) {
	s := spec(t, `end=$(( $(date +%s) + 2 )); while [ $(date +%s) -lt $end ]; do :; done`)
	s.Limits.CPUPercent = 20
	t0 := time.Now()
	out, e := run(t, s)
	wall := time.Since(t0)
	if e.Code != 0 {
		t.Fatalf("exit %+v\n%s", e, out)
	}
	share := float64(e.CPU) / float64(wall)
	t.Logf("cpu %s over %s wall: %.0f%% of one core (limit 20%%)", e.CPU, wall, share*100)
	if e.CPU == 0 || share > 0.5 {
		t.Fatalf("cpu %s over %s wall (%.0f%%), limit 20%%", e.CPU, wall, share*100)
	}
}

func TestInitErrorsReachTheCaller(t *testing.T) {
	s := spec(t, "")
	s.Path = "no-such-command-xyz"
	if _, err := Start(s, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "no-such-command-xyz") {
		t.Fatalf("err %v", err)
	}
	s = spec(t, "true")
	s.UID = 0
	if err := Check(s); err == nil || !strings.Contains(err.Error(), "uid 0") {
		t.Fatalf("check uid 0: %v", err)
	}
	if _, err := Start(s, &bytes.Buffer{}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "uid 0") {
		t.Fatalf("start uid 0: %v", err)
	}
	if err := Probe(spec(t, "")); err != nil {
		t.Fatal(err)
	}
}

// The production layout: the jobs dir sits under a masked $JOBLET_HOME on
// the node's disk; the job still gets (only) its own directory.
func TestWorkDirUnderHiddenHome(t *testing.T) {
	home, err := os.MkdirTemp("/var/tmp", "joblet-home-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(home)
	os.WriteFile(filepath.Join(home, "ca-key"), []byte("PRIVATE KEY"), 0o644)
	s := spec(t, `pwd; echo w > f && cat f; ls -a ..; cat `+home+`/ca-key`)
	other, _ := MakeWorkDir(filepath.Join(home, "jobs"), "other", s.UID, s.GID)
	os.WriteFile(filepath.Join(other, "x"), []byte("other job"), 0o644)
	s.WorkDir, _ = MakeWorkDir(filepath.Join(home, "jobs"), s.ID, s.UID, s.GID)
	s.Hide = []string{home}
	out, e := run(t, s)
	if e.Code == 0 || !strings.HasPrefix(out, s.WorkDir+"\nw\n") || strings.Contains(out, "PRIVATE KEY") || strings.Contains(out, "other") {
		t.Fatalf("exit %+v (want the failed cat's 1)\n%s", e, out)
	}
}

// With network host the job shares the node's network, but the addresses
// guarded for its user are refused. 127.0.0.2 stands in for the metadata
// endpoint, which tests never contact.
func TestHostNetworkGuard(t *testing.T) {
	guarded, err := net.Listen("tcp", "127.0.0.2:0")
	if err != nil {
		t.Fatal(err)
	}
	defer guarded.Close()
	open, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close()
	for _, l := range []net.Listener{guarded, open} {
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
	}
	script := fmt.Sprintf(`bash -c 'echo > /dev/tcp/127.0.0.2/%d' 2>/dev/null && echo GUARDED-REACHED; bash -c 'echo > /dev/tcp/127.0.0.1/%d' && echo open-reached`,
		guarded.Addr().(*net.TCPAddr).Port, open.Addr().(*net.TCPAddr).Port)
	s := spec(t, script)
	s.Network = NetHost
	// Unguarded first: the address is reachable, so the refusal below is the rule's.
	if out, _ := run(t, s); !strings.Contains(out, "GUARDED-REACHED") {
		t.Fatalf("without the guard the job should reach 127.0.0.2:\n%s", out)
	}
	if err := GuardHostNetwork(s.UID, []string{"127.0.0.2"}); err != nil {
		t.Fatal(err)
	}
	defer UnguardHostNetwork()
	s = spec(t, script)
	s.Network = NetHost
	out, _ := run(t, s)
	if strings.Contains(out, "GUARDED-REACHED") || !strings.Contains(out, "open-reached") {
		t.Fatalf("want the guarded address refused and the host's loopback reached:\n%s", out)
	}
}

// The command is not PID 1: signals act on it as anywhere else, and its
// status (code or signal) is what Wait reports.
func TestCommandSignalsAndStatus(t *testing.T) {
	if _, e := run(t, spec(t, `kill -9 $$`)); e.Signal != syscall.SIGKILL || e.Code != -1 {
		t.Errorf("kill -9 $$: %+v", e)
	}
	if _, e := run(t, spec(t, `exit 7`)); e.Signal != 0 || e.Code != 7 {
		t.Errorf("exit 7: %+v", e)
	}
	p, out := start(t, spec(t, `echo up; exec sleep 600`))
	for i := 0; i < 500 && out.String() == ""; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // past the exec
	p.Signal(syscall.SIGTERM)
	select {
	case <-time.After(5 * time.Second):
		t.Fatal("SIGTERM did not end `sleep`")
	case e := <-waitCh(p):
		if e.Signal != syscall.SIGTERM {
			t.Errorf("sleep after SIGTERM: %+v", e)
		}
	}
}

func waitCh(p *Process) <-chan Exit {
	c := make(chan Exit, 1)
	go func() { c <- p.Wait() }()
	return c
}

// A job does not outlive the process that started it (the server), even
// when that dies by SIGKILL. The test binary runs itself as that process.
func TestJobDiesWithTheServer(t *testing.T) {
	if os.Getenv("SANDBOX_TEST_SERVER") != "" {
		p, _ := start(t, spec(t, `setsid sleep 781 & sleep 782`))
		fmt.Println("started", p.Pid())
		time.Sleep(time.Minute)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestJobDiesWithTheServer$")
	cmd.Env = append(os.Environ(), "SANDBOX_TEST_SERVER=1")
	out := &syncBuf{}
	cmd.Stdout = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	for t0 := time.Now(); !hostRunsAll("781", "782"); time.Sleep(20 * time.Millisecond) {
		if time.Since(t0) > 10*time.Second {
			cmd.Process.Kill()
			t.Fatalf("the helper's job never started: %s", out)
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	for t0 := time.Now(); len(sleepers("781"))+len(sleepers("782")) > 0; time.Sleep(20 * time.Millisecond) {
		if time.Since(t0) > 3*time.Second {
			t.Fatalf("the job outlived its server: sleep 781 %v, sleep 782 %v", sleepers("781"), sleepers("782"))
		}
	}
}

func hostRunsAll(args ...string) bool {
	for _, a := range args {
		if len(sleepers(a)) == 0 {
			return false
		}
	}
	return true
}

// The job's /dev holds only the harmless nodes programs expect: a host
// device (a disk, fuse, tun, kvm) is not there whatever its mode on the
// host, and the job cannot add one; /dev/null still works.
func TestMinimalDev(t *testing.T) {
	out, e := run(t, spec(t, `ls -A /dev | tr '\n' ' '; echo; echo x >/dev/null && echo NULL-OK; head -c 4 /dev/urandom | wc -c; touch /dev/evil 2>/dev/null && echo ADDED; true`))
	if e.Code != 0 {
		t.Fatalf("exit %+v\n%s", e, out)
	}
	lines := strings.Split(out, "\n")
	got := strings.Fields(lines[0])
	want := map[string]bool{"null": true, "zero": true, "full": true, "random": true, "urandom": true, "tty": true,
		"pts": true, "shm": true, "ptmx": true, "fd": true, "stdin": true, "stdout": true, "stderr": true}
	for _, n := range got {
		if !want[n] {
			t.Errorf("the job's /dev holds %s", n)
		}
	}
	if len(got) != len(want) || !strings.Contains(out, "NULL-OK") || !strings.Contains(out, "\n4\n") || strings.Contains(out, "ADDED") {
		t.Fatalf("the job's /dev: %q", out)
	}
	host, _ := os.ReadDir("/dev")
	reliability.Record(t, "jobs", "a job lists and uses /dev", fmt.Sprintf("%d entries (the host's /dev has %d): %s; /dev/null and /dev/urandom work; nothing can be added", len(got), len(host), lines[0]))
}

// The job user the sandbox creates has the attributes the package's postinst
// gives it (home /nonexistent, no login shell): one useradd line for both.
func TestJobUserAttributes(t *testing.T) {
	postinst, err := os.ReadFile(filepath.Join("..", "..", "packaging", "scripts", "postinstall.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if line := "useradd " + strings.Join(jobUserAdd, " ") + " " + DefaultUser + "\n"; !strings.Contains(string(postinst), line) {
		t.Fatalf("packaging/scripts/postinstall.sh does not create the job user with %q", line)
	}
	name := fmt.Sprintf("jbt%d", os.Getpid()%100000)
	if out, err := createUser(name); err != nil {
		t.Fatalf("useradd: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	if u.HomeDir != "/nonexistent" {
		t.Fatalf("the job user's home is %s, want /nonexistent", u.HomeDir)
	}
	if _, err := os.Stat(u.HomeDir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("%s exists: %v", u.HomeDir, err)
	}
	passwd, _ := os.ReadFile("/etc/passwd")
	if !strings.Contains(string(passwd), name+":x:"+u.Uid+":"+u.Gid+"::/nonexistent:/usr/sbin/nologin\n") {
		t.Fatalf("/etc/passwd has no system user %s with home /nonexistent and shell nologin", name)
	}
}
