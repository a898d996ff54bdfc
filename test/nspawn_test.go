package test

// The machinery of TestSystemdPackage: a cached Debian root, a container
// booted from it with systemd-nspawn, commands run inside it, and a
// forwarder into its network.

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/jobid"
	"github.com/ehsaniara/joblet/test/harness"
	"golang.org/x/sys/unix"
)

// debDepends lists the packages a .deb depends on (first alternatives,
// versions dropped): the root must hold them for dpkg -i.
func debDepends(t *testing.T, deb string) []string {
	t.Helper()
	var pkgs []string
	d := harness.MustRun(t, harness.Env(), "dpkg-deb", "-f", deb, "Depends").Stdout
	for _, alt := range strings.Split(d, ",") {
		if f := strings.Fields(strings.Split(alt, "|")[0]); len(f) > 0 {
			pkgs = append(pkgs, f[0])
		}
	}
	return pkgs
}

// rootCache holds the debootstrapped roots, one per package list, mirror
// and suite: only the first run pays for debootstrap.
const rootCache = "/var/cache/joblet-test"

// debianRoot returns a minbase root of this machine's Debian suite with
// systemd and the package's dependencies, from the cache or made now.
func debianRoot(t *testing.T, depends []string) string {
	t.Helper()
	suite, mirror := aptSource(t)
	include := append([]string{"systemd", "systemd-sysv", "dbus"}, depends...)
	sort.Strings(include)
	sum := sha256.Sum256([]byte(strings.Join(append([]string{"minbase", suite, mirror}, include...), "\n")))
	dir := filepath.Join(rootCache, "debian-"+suite+"-"+hex.EncodeToString(sum[:8]))
	if err := os.MkdirAll(rootCache, 0o755); err != nil {
		t.Fatal(err)
	}
	// One maker at a time; the others wait and use its root.
	lock, err := os.OpenFile(filepath.Join(rootCache, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	root := filepath.Join(dir, "root")
	if _, err := os.Stat(filepath.Join(dir, "complete")); err == nil {
		return root
	}
	tmp := dir + ".tmp"
	removeTree(t, tmp)
	start := time.Now()
	// Measured here: 4 to 5.5 minutes on a loaded machine; a stuck mirror
	// fails with debootstrap's own output, before the suite's timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--include="+strings.Join(include, ","), suite, filepath.Join(tmp, "root"), mirror)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) } // its traps unmount what it mounted
	cmd.WaitDelay = time.Minute
	if out, err := cmd.CombinedOutput(); err != nil {
		removeTree(t, tmp)
		t.Fatalf("debootstrap --variant=minbase --include=%s %s %s: %v\n%s", strings.Join(include, ","), suite, mirror, err, tail(string(out), 3000))
	}
	// minbase has no /etc/hosts (localhost must resolve for the node and
	// rnx), and its downloaded .debs are no use in the cache.
	if err := os.WriteFile(filepath.Join(tmp, "root", "etc", "hosts"), []byte("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	debs, _ := filepath.Glob(filepath.Join(tmp, "root", "var", "cache", "apt", "archives", "*.deb"))
	for _, d := range debs {
		os.Remove(d)
	}
	if err := os.WriteFile(filepath.Join(tmp, "complete"), []byte(strings.Join(include, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	t.Logf("debootstrap %s (%s) into %s: %v", suite, strings.Join(include, ","), dir, time.Since(start).Round(time.Second))
	return root
}

// removeTree deletes a failed root, after checking that nothing is still
// mounted in it (debootstrap mounts /proc and /sys there): removing
// through a mount would delete the machine's files.
func removeTree(t *testing.T, dir string) {
	t.Helper()
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return
	}
	for _, mnt := range mountsUnder(t, dir) {
		unix.Unmount(mnt, unix.MNT_DETACH)
	}
	if left := mountsUnder(t, dir); len(left) > 0 {
		t.Fatalf("%s still has mounts %v: unmount them and remove it by hand", dir, left)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
}

// mountsUnder lists mount points at or below dir, deepest first.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(out)))
	return out
}

// aptSource is the Debian mirror and suite apt uses here: the first deb
// source (one-line or deb822) whose suite is this release's codename.
func aptSource(t *testing.T) (suite, mirror string) {
	t.Helper()
	for _, l := range strings.Split(readFile(t, "/etc/os-release"), "\n") {
		if v, ok := strings.CutPrefix(l, "VERSION_CODENAME="); ok {
			suite = strings.Trim(v, `"`)
		}
	}
	if suite == "" {
		t.Fatal("/etc/os-release names no VERSION_CODENAME: TestSystemdPackage debootstraps this machine's Debian release")
	}
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, f := range append([]string{"/etc/apt/sources.list"}, files...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if strings.HasSuffix(f, ".sources") {
			for _, stanza := range strings.Split(string(b), "\n\n") {
				fields := map[string]string{}
				for _, l := range strings.Split(stanza, "\n") {
					if k, v, ok := strings.Cut(l, ":"); ok && !strings.HasPrefix(l, "#") {
						fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
					}
				}
				uris := strings.Fields(fields["URIs"])
				if strings.Contains(" "+fields["Types"]+" ", " deb ") && len(uris) > 0 && strings.Contains(" "+fields["Suites"]+" ", " "+suite+" ") {
					return suite, uris[0]
				}
			}
			continue
		}
		for _, l := range strings.Split(string(b), "\n") {
			f := strings.Fields(l)
			if len(f) > 0 && f[0] == "deb" && len(f) > 1 && strings.HasPrefix(f[1], "[") { // deb [options] uri suite
				for len(f) > 1 && !strings.HasSuffix(f[1], "]") {
					f = append(f[:1], f[2:]...)
				}
				f = append(f[:1], f[2:]...)
			}
			if len(f) >= 3 && f[0] == "deb" && f[2] == suite {
				return suite, f[1]
			}
		}
	}
	t.Fatalf("no apt source for %s in /etc/apt/sources.list*: TestSystemdPackage debootstraps from the mirror apt uses", suite)
	return "", ""
}

// machine is a booted systemd-nspawn container.
type machine struct {
	name    string
	nspawn  *exec.Cmd
	out     *syncBuffer
	done    chan struct{}
	leader  int // its PID 1, as the host sees it
	cgroups []string
}

// bootMachine boots root (pristine: --volatile=overlay keeps every write in
// memory) with systemd as PID 1 and dist read-only at /mnt/dist. nspawn runs
// in cgroups of its own below the test's, so systemd's and the jobs' groups
// stay there; its network is its own (loopback only). Everything is
// stopped and removed at cleanup, whether the test passed or not.
func bootMachine(t *testing.T, root, dist string) *machine {
	t.Helper()
	b := make([]byte, 4)
	rand.Read(b)
	m := &machine{name: "joblet-systemd-" + hex.EncodeToString(b), out: &syncBuffer{}, done: make(chan struct{})}
	t.Cleanup(func() { m.removeCgroups(t) })
	procs := m.makeCgroups(t)
	// The shell joins the cgroups, then becomes nspawn: nspawn starts inside them.
	script := `while [ "$1" != -- ]; do echo $$ > "$1" || exit 1; shift; done; shift; exec "$@"`
	args := append([]string{"-c", script, "sh"}, procs...)
	args = append(args, "--", "systemd-nspawn", "-D", root, "-b", "--register=no", "--keep-unit", "--console=pipe",
		"--private-network", "--volatile=overlay", "-M", m.name, "--bind-ro="+dist+":/mnt/dist")
	m.nspawn = exec.Command("sh", args...)
	m.nspawn.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	m.nspawn.Stdout, m.nspawn.Stderr = m.out, m.out
	// If the test binary dies, nspawn halts the container.
	m.nspawn.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	if err := m.nspawn.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	go func() { m.nspawn.Wait(); close(m.done) }()
	t.Cleanup(func() { m.stop(t) })
	harness.Eventually(t, time.Minute, "the container's systemd (PID 1)", func() error {
		select {
		case <-m.done:
			return fmt.Errorf("systemd-nspawn exited: %s", m.out)
		default:
		}
		m.leader = containerInit(m.nspawn.Process.Pid)
		if m.leader == 0 {
			return errors.New("not started")
		}
		return nil
	})
	harness.Eventually(t, 2*time.Minute, "the container's boot", func() error {
		r := m.run(t, "systemctl", "is-system-running")
		switch s := strings.TrimSpace(r.Stdout); s {
		case "running":
			return nil
		case "degraded":
			t.Fatalf("the container booted degraded:\n%s", m.run(t, "systemctl", "--failed", "--no-pager").Stdout)
		default:
			return fmt.Errorf("%s %s", s, r.Stderr)
		}
		return nil
	})
	// nspawn mounts the cgroup v1 controllers read-only on a host that is
	// not pure cgroup v2; joblet needs these writable for its jobs'
	// groups (only the container's own subtree is mounted). Before the
	// service starts: its mount namespace copies the flags.
	for _, c := range []string{"memory", "cpu", "cpuacct", "pids", "freezer"} {
		dir := "/sys/fs/cgroup/" + c
		if o := m.run(t, "findmnt", "-n", "-o", "FSTYPE,OPTIONS", dir).Stdout; strings.HasPrefix(o, "cgroup ") && strings.Contains(o, " ro,") {
			m.mustRun(t, "mount", "-o", "remount,bind,rw", dir)
		}
	}
	return m
}

// syncBuffer collects a process's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// containerInit finds the container's systemd: a child of nspawn that is
// PID 1 of its own PID namespace.
func containerInit(nspawn int) int {
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		s := string(st)
		if !strings.Contains(s, "\nPPid:\t"+strconv.Itoa(nspawn)+"\n") || !strings.HasPrefix(s, "Name:\tsystemd\n") {
			continue
		}
		for _, l := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(l, "NSpid:"); ok {
				if f := strings.Fields(v); len(f) == 2 && f[1] == "1" {
					return pid
				}
			}
		}
	}
	return 0
}

// makeCgroups creates the machine's group below the test's own in every
// mounted hierarchy and returns their cgroup.procs files.
func (m *machine) makeCgroups(t *testing.T) []string {
	t.Helper()
	mounts := map[string]string{} // "" (v2) or a v1 hierarchy's options -> mount point
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		pre, post, ok := strings.Cut(l, " - ")
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if !ok || len(pf) < 5 || len(qf) < 3 || pf[3] != "/" {
			continue
		}
		switch qf[0] {
		case "cgroup2":
			mounts[""] = pf[4]
		case "cgroup":
			mounts[qf[2]] = pf[4]
		}
	}
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	var procs []string
	for _, l := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 {
			continue
		}
		mount := ""
		for opts, mp := range mounts {
			if parts[1] == "" && opts == "" {
				mount = mp
			}
			if parts[1] != "" && opts != "" && containsAll(strings.Split(opts, ","), strings.Split(parts[1], ",")) {
				mount = mp
			}
		}
		if mount == "" {
			continue
		}
		parent := filepath.Join(mount, parts[2])
		dir := filepath.Join(parent, m.name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			t.Fatalf("cgroup for the container: %v", err)
		}
		m.cgroups = append(m.cgroups, dir)
		// A v1 cpuset group takes no process before it has CPUs and memory nodes.
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			if v, err := os.ReadFile(filepath.Join(parent, f)); err == nil {
				if err := os.WriteFile(filepath.Join(dir, f), v, 0); err != nil {
					t.Fatalf("cgroup for the container: %v", err)
				}
			}
		}
		procs = append(procs, filepath.Join(dir, "cgroup.procs"))
	}
	return procs
}

func containsAll(set, want []string) bool {
	for _, w := range want {
		found := false
		for _, s := range set {
			found = found || s == w
		}
		if !found {
			return false
		}
	}
	return true
}

// stop halts the container (SIGTERM to nspawn: a clean shutdown), killing
// its PID 1 (and so every process in it) if that takes too long. Its
// mounts live in nspawn's mount namespace and go with it.
func (m *machine) stop(t *testing.T) {
	if t.Failed() && m.leader != 0 {
		// Not m.run: a cleanup must not stop at a failed command.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		out, _ := exec.CommandContext(ctx, "nsenter", "--target", strconv.Itoa(m.leader), "--all", "--",
			"journalctl", "--no-pager", "-o", "short-monotonic").CombinedOutput()
		cancel()
		t.Logf("the container's journal:\n%s", tail(string(out), 20000))
	}
	m.nspawn.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(20 * time.Second):
		if m.leader != 0 {
			syscall.Kill(m.leader, syscall.SIGKILL)
		}
		m.nspawn.Process.Kill()
		<-m.done
	}
	if t.Failed() {
		t.Logf("systemd-nspawn output:\n%s", tail(m.out.String(), 5000))
	}
	os.Remove("/run/systemd/nspawn/propagate/" + m.name)
}

// removeCgroups removes the machine's groups and everything systemd and
// joblet made below them, deepest first, killing whatever is left.
func (m *machine) removeCgroups(t *testing.T) {
	for _, top := range m.cgroups {
		var dirs []string
		filepath.WalkDir(top, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			var err error
			for try := 0; try < 100; try++ {
				for _, pid := range readPidsFile(filepath.Join(dirs[i], "cgroup.procs")) {
					syscall.Kill(pid, syscall.SIGKILL)
				}
				if err = os.Remove(dirs[i]); err == nil || errors.Is(err, fs.ErrNotExist) {
					err = nil
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
			if err != nil {
				t.Errorf("the container's cgroup %s is left: %v", dirs[i], err)
			}
		}
	}
}

func readPidsFile(path string) []int {
	b, _ := os.ReadFile(path)
	var pids []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			pids = append(pids, n)
		}
	}
	return pids
}

// run runs a command inside the container (all its namespaces, its root),
// as root with a login's plain environment.
func (m *machine) run(t *testing.T, args ...string) harness.Result {
	t.Helper()
	env := []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LANG=C.UTF-8"}
	return harness.Run(t, env, "nsenter", append([]string{"--target", strconv.Itoa(m.leader), "--all", "--"}, args...)...)
}

func (m *machine) mustRun(t *testing.T, args ...string) harness.Result {
	t.Helper()
	r := m.run(t, args...)
	if r.Code != 0 {
		t.Fatalf("%s (in the container): %s", strings.Join(args, " "), r)
	}
	return r
}

// path is p inside the container, as the host reaches it.
func (m *machine) path(p string) string { return fmt.Sprintf("/proc/%d/root%s", m.leader, p) }

// appendSettings adds lines to /etc/default/joblet, as an operator does.
func (m *machine) appendSettings(t *testing.T, lines ...string) {
	t.Helper()
	f, err := os.OpenFile(m.path("/etc/default/joblet"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(strings.Join(lines, "\n") + "\n"); err != nil {
		t.Fatal(err)
	}
}

// mainPID is the service's main process, as the container numbers it.
func (m *machine) mainPID(t *testing.T) int {
	t.Helper()
	s := strings.TrimSpace(m.mustRun(t, "systemctl", "show", "-P", "MainPID", "joblet").Stdout)
	pid, err := strconv.Atoi(s)
	if err != nil || pid == 0 {
		t.Fatalf("joblet.service has no main process (MainPID %q): %s", s, m.run(t, "systemctl", "status", "--no-pager", "joblet"))
	}
	return pid
}

// waitInfo waits for rnx info, inside the container, to answer from a node
// of version.
func (m *machine) waitInfo(t *testing.T, version string) string {
	t.Helper()
	var out string
	harness.Eventually(t, 30*time.Second, "rnx info in the container", func() error {
		r := m.run(t, "rnx", "info")
		if r.Code != 0 {
			return errors.New(r.String())
		}
		if out = r.Stdout; !strings.Contains(out, "version:   "+version+"\n") && !strings.Contains(out, "version:   joblet "+version+" ") {
			return fmt.Errorf("not version %s:\n%s", version, out)
		}
		return nil
	})
	return out
}

// runJob starts sh -c script as a job and returns its id.
func (m *machine) runJob(t *testing.T, script string) string {
	t.Helper()
	id := strings.TrimSpace(m.mustRun(t, "rnx", "job", "run", "--", "sh", "-c", script).Stdout)
	if _, ok := jobid.Node(id); !ok {
		t.Fatalf("rnx job run printed %q, not a job id", id)
	}
	return id
}

// waitJob waits for rnx job list to show the job in state.
func (m *machine) waitJob(t *testing.T, id, state string) {
	t.Helper()
	harness.Eventually(t, 30*time.Second, "job "+id+" "+state, func() error {
		out := m.mustRun(t, "rnx", "job", "list").Stdout
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) > 1 && f[0] == id && f[1] == state {
				return nil
			}
		}
		return fmt.Errorf("not %s:\n%s", state, out)
	})
}

// jobProcs lists the container's processes running as uid: every
// process of the container, jobs included, is in its cgroups.
func (m *machine) jobProcs(t *testing.T, uid string) []int {
	t.Helper()
	var pids []int
	dirs, _ := os.ReadDir("/proc")
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil || !strings.Contains(string(st), "\nUid:\t"+uid+"\t") {
			continue
		}
		if cg, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid)); strings.Contains(string(cg), "/"+m.name+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}

// checkNoJobLeftovers: no job cgroup in any controller joblet uses, no job
// work directory, no mount below /opt/joblet.
func (m *machine) checkNoJobLeftovers(t *testing.T) {
	t.Helper()
	// The container's cgroup trees (its own subtrees of the host's): no
	// group of a job, and no group of the service, which systemd removes
	// only when the jobs' groups below it are gone.
	cgroups := m.path("/sys/fs/cgroup")
	filepath.WalkDir(cgroups, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return nil
		}
		rel := strings.TrimPrefix(p, cgroups)
		if strings.Contains(rel, "/joblet-jobs/") || strings.HasSuffix(rel, "/joblet.service") {
			t.Errorf("cgroup /sys/fs/cgroup%s left after systemctl stop", rel)
			return fs.SkipDir
		}
		return nil
	})
	entries, err := os.ReadDir(m.path("/opt/joblet/jobs"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Fatal(err)
	}
	for _, e := range entries {
		t.Errorf("job work directory /opt/joblet/jobs/%s left after systemctl stop", e.Name())
	}
	if mnts := strings.TrimSpace(m.run(t, "findmnt", "-n", "-R", "-o", "TARGET", "/opt/joblet").Stdout); mnts != "" {
		t.Errorf("mounts below /opt/joblet after systemctl stop:\n%s", mnts)
	}
	if t.Failed() {
		t.FailNow()
	}
}

// forwardInto listens on 127.0.0.1 inside the network namespace of pid and
// forwards every connection to target on the host's loopback: the
// container, on a network of its own, reaches moto and nothing else. The
// socket is made on a thread moved into the container's namespace, and
// stays there; connections to target are dialed from the host's.
func forwardInto(t *testing.T, pid int, target string) int {
	t.Helper()
	type result struct {
		l   net.Listener
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		host, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer host.Close()
		ns, err := os.Open(fmt.Sprintf("/proc/%d/ns/net", pid))
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer ns.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: fmt.Errorf("setns into the container's network: %w", err)}
			return
		}
		l, err := net.Listen("tcp", "127.0.0.1:0")
		// Back to the host's network; a thread that cannot go back stays
		// locked and ends with this goroutine.
		if unix.Setns(int(host.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		ch <- result{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("a listener in the container's network: %v", r.err)
	}
	t.Cleanup(func() { r.l.Close() })
	go func() {
		for {
			c, err := r.l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				d, err := net.DialTimeout("tcp", target, 5*time.Second)
				if err != nil {
					return
				}
				defer d.Close()
				go func() { io.Copy(d, c); d.(*net.TCPConn).CloseWrite() }()
				io.Copy(c, d)
			}()
		}
	}()
	return r.l.Addr().(*net.TCPAddr).Port
}

func tail(s string, n int) string {
	if len(s) > n {
		return "..." + s[len(s)-n:]
	}
	return s
}
