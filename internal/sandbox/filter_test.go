package sandbox

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// probeName is argv[0] under which this test binary, copied where a job can
// run it, makes the calls the job's syscall filter refuses and prints each
// one's errno: the Go test helper the util-linux tools cannot replace
// (util-linux mount checks for root before it calls mount(2)).
const probeName = "joblet-syscall-probe"

func init() {
	if filepath.Base(os.Args[0]) != probeName {
		return
	}
	sleeper := exec.Command("sleep", "60")
	if err := sleeper.Start(); err != nil {
		fmt.Println("start sleep:", err)
		os.Exit(2)
	}
	defer sleeper.Process.Kill()
	dir, _ := os.MkdirTemp("", "m")
	attr := &syscall.ProcAttr{Sys: &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWUSER}}
	for _, c := range []struct {
		name string
		call func() error
	}{
		{"unshare-user", func() error { return unix.Unshare(unix.CLONE_NEWUSER) }},
		{"clone-user", func() error { _, err := syscall.ForkExec("/bin/true", []string{"true"}, attr); return err }},
		{"unshare-mount", func() error { return unix.Unshare(unix.CLONE_NEWNS) }},
		{"mount", func() error { return unix.Mount("none", dir, "tmpfs", 0, "") }},
		{"ptrace-other", func() error { return unix.PtraceAttach(sleeper.Process.Pid) }},
		{"keyctl", func() error {
			_, err := unix.AddKey("user", "joblet-probe", []byte("x"), unix.KEY_SPEC_PROCESS_KEYRING)
			return err
		}},
		{"bpf", func() error { return errno(unix.Syscall(unix.SYS_BPF, unix.BPF_MAP_CREATE, 0, 0)) }},
		{"perf_event_open", func() error {
			attr := unix.PerfEventAttr{Type: unix.PERF_TYPE_SOFTWARE, Config: unix.PERF_COUNT_SW_CPU_CLOCK}
			attr.Size = uint32(unsafe.Sizeof(attr))
			_, err := unix.PerfEventOpen(&attr, 0, -1, -1, 0)
			return err
		}},
		{"init_module", func() error { return errno(unix.Syscall(unix.SYS_INIT_MODULE, 0, 0, 0)) }},
		{"setns", func() error { return errno(unix.Syscall(unix.SYS_SETNS, 0, 0, 0)) }},
	} {
		err := c.call()
		fmt.Printf("%s=%v\n", c.name, errName(err))
	}
	highWordProbes()
	os.Exit(0)
}

// highWords are put in the upper half of arguments the kernel reads only
// the lower half of: the numbers of the syscalls Docker's profile checks
// right after its socket and personality rules on amd64 (arch_prctl 158,
// modify_ldt 154, clone 56), which the unpatched library compared such a
// half with, letting the call through.
var highWords = []uint64{56, 154, 158}

// highWordProbes prints name=errno (<nil> on success) for calls Docker's
// profile allows and for high-word variants of calls it refuses.
func highWordProbes() {
	sock := func(family, typ, proto uint64) error {
		fd, _, e := syscall.RawSyscall6(unix.SYS_SOCKET, uintptr(family), uintptr(typ), uintptr(proto), 0, 0, 0)
		if e != 0 {
			return e
		}
		unix.Close(int(fd))
		return nil
	}
	persona := func(p uint64) error { return errno(syscall.RawSyscall(unix.SYS_PERSONALITY, uintptr(p), 0, 0)) }
	show := func(name string, err error) { fmt.Printf("%s=%v\n", name, errName(err)) }
	show("socket-inet6", sock(unix.AF_INET6, unix.SOCK_STREAM, 0))
	show("socket-netlink-route", sock(unix.AF_NETLINK, unix.SOCK_RAW, unix.NETLINK_ROUTE))
	show("socket-vsock", sock(unix.AF_VSOCK, unix.SOCK_STREAM, 0))
	for _, hi := range highWords {
		show(fmt.Sprintf("socket-vsock-hi%d", hi), sock(unix.AF_VSOCK|hi<<32, unix.SOCK_STREAM, 0))
		show(fmt.Sprintf("socket-netlink-audit-hi%d", hi), sock(unix.AF_NETLINK|hi<<32, unix.SOCK_RAW, unix.NETLINK_AUDIT))
		show(fmt.Sprintf("clone-user-hi%d", hi), rawCloneUser(hi))
		show(fmt.Sprintf("personality-exec-hi%d", hi), persona(readImpliesExec|hi<<32))
		persona(0)
	}
	show("personality-0x20008", persona(0x20008))
	show("personality-query", persona(0xffffffff))
	persona(0)
}

// rawCloneUser calls the legacy clone with CLONE_NEWUSER and hi in the
// flags' upper half (the kernel uses their lower 32 bits). Should the
// filter let it through, the child exits at once and is reaped.
func rawCloneUser(hi uint64) error {
	pid, _, e := syscall.RawSyscall6(unix.SYS_CLONE, uintptr(unix.CLONE_NEWUSER|uint64(unix.SIGCHLD)|hi<<32), 0, 0, 0, 0, 0)
	if e != 0 {
		return e
	}
	if pid == 0 {
		syscall.RawSyscall(unix.SYS_EXIT_GROUP, 0, 0, 0)
	}
	var ws unix.WaitStatus
	unix.Wait4(int(pid), &ws, 0, nil)
	return nil
}

func errno(_, _ uintptr, e syscall.Errno) error {
	if e == 0 {
		return nil
	}
	return e
}

func errName(err error) string {
	var e syscall.Errno
	if errors.As(err, &e) {
		return unix.ErrnoName(e)
	}
	return fmt.Sprint(err)
}

// probeBinary copies this test binary where a job can run it: outside /tmp
// (the job's own) and readable by the job user.
func probeBinary(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("/var/tmp", "joblet-probe-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	bin := filepath.Join(dir, probeName)
	out, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
	return bin
}

// In a job, every call Docker's default profile refuses an unprivileged
// container fails with EPERM, and so does ptrace of another process; the
// capability bounding set is empty. The util-linux and strace binaries
// show it as a user would meet it.
func TestSyscallFilterRefusesWithEPERM(t *testing.T) {
	for _, tool := range []string{"unshare", "strace"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is missing (scripts/lib/deps.sh installs it): %v", tool, err)
		}
	}
	bin := probeBinary(t)
	s := spec(t, bin+`; echo ---; grep CapBnd /proc/self/status; unshare -U true; echo unshare=$?; unshare -Ur true; echo unshare-root=$?
sleep 60 & strace -p $! -e trace=none 2>&1 | grep -m1 attach; kill $!; echo ok`)
	out, e := run(t, s)
	if e.Code != 0 {
		t.Fatalf("exit %+v\n%s", e, out)
	}
	probes, tools, _ := strings.Cut(out, "---\n")
	for _, name := range []string{"unshare-user", "clone-user", "unshare-mount", "mount", "ptrace-other", "keyctl", "bpf", "perf_event_open", "init_module", "setns"} {
		if !strings.Contains(probes, name+"=EPERM\n") {
			t.Errorf("%s is not refused with EPERM:\n%s", name, probes)
		}
	}
	for _, want := range []string{"CapBnd:\t0000000000000000\n", "unshare=1\n", "unshare-root=1\n", "strace: attach: ptrace("} {
		if !strings.Contains(tools, want) {
			t.Errorf("job output lacks %q:\n%s", want, tools)
		}
	}
	if strings.Count(tools, "Operation not permitted") < 3 {
		t.Errorf("want unshare -U, unshare -Ur and strace -p refused with EPERM (Operation not permitted):\n%s", tools)
	}
}

// In a job, an argument's upper half changes nothing: socket(AF_VSOCK),
// socket(AF_NETLINK, NETLINK_AUDIT), personality(READ_IMPLIES_EXEC) and
// clone(CLONE_NEWUSER) with a syscall number there are refused with EPERM,
// while IPv6 and netlink route sockets and the personality values Docker's
// profile allows work (the patched third_party/go-seccomp-bpf).
func TestSyscallFilterHighWordArguments(t *testing.T) {
	out, e := run(t, spec(t, probeBinary(t)))
	if e.Code != 0 {
		t.Fatalf("exit %+v\n%s", e, out)
	}
	want := []string{"socket-inet6=<nil>", "socket-netlink-route=<nil>", "socket-vsock=EPERM",
		"personality-0x20008=<nil>", "personality-query=<nil>"}
	for _, hi := range highWords {
		for _, name := range []string{"socket-vsock", "socket-netlink-audit", "clone-user", "personality-exec"} {
			want = append(want, fmt.Sprintf("%s-hi%d=EPERM", name, hi))
		}
	}
	for _, w := range want {
		if !strings.Contains(out, w+"\n") {
			t.Errorf("job output lacks %q:\n%s", w, out)
		}
	}
}

// The filter leaves what jobs do alone: threads, forks, pipes, sockets on
// loopback, and a clone without namespace flags (the Go runtime's, sh's).
func TestSyscallFilterKeepsOrdinaryWork(t *testing.T) {
	s := spec(t, `python3 -c '
import os, socket, threading
t = threading.Thread(target=lambda: None); t.start(); t.join()
r, w = os.pipe(); pid = os.fork()
if pid == 0: os.write(w, b"x"); os._exit(0)
os.waitpid(pid, 0); assert os.read(r, 1) == b"x"
l = socket.socket(); l.bind(("127.0.0.1", 0)); l.listen(); c = socket.create_connection(l.getsockname()); c.close()
print("fine")'`)
	out, e := run(t, s)
	if e.Code != 0 || !strings.Contains(out, "fine") {
		t.Fatalf("exit %+v\n%s", e, out)
	}
}

// A job writing past its disk limit gets ENOSPC, wherever it writes (work
// dir, /tmp, /dev/shm share the limit), is not OOM-killed for it, and the
// node's disk holds none of it.
func TestDiskLimitIsENOSPC(t *testing.T) {
	const limit = 64 << 20
	s := spec(t, `dd if=/dev/zero of=big bs=1M count=1024 2>&1 | grep -o 'No space left on device'; echo dd=$?
dd if=/dev/zero of=/tmp/more bs=1M count=8 2>&1 | grep -o 'No space left on device'
dd if=/dev/zero of=/dev/shm/more bs=1M count=8 2>&1 | grep -o 'No space left on device'
rm big; dd if=/dev/zero of=/tmp/again bs=1M count=8 2>/dev/null && echo freed-ok
i=0; while true > f$i; do i=$((i+1)); done 2>/dev/null; echo files=$i`)
	s.Limits = Limits{MemoryBytes: 4 * limit, DiskBytes: limit} // files are charged to memory too
	before := freeBytes(t, s.WorkDir)
	out, e := run(t, s)
	after := freeBytes(t, s.WorkDir)
	if e.Code != 0 || e.OOMKilled {
		t.Fatalf("exit %+v\n%s", e, out)
	}
	if n := strings.Count(out, "No space left on device"); n != 3 || !strings.Contains(out, "freed-ok") {
		t.Fatalf("want ENOSPC in the work dir, /tmp and /dev/shm, and room again once the file is removed:\n%s", out)
	}
	// Files are bounded too (one inode per page of the limit), not only bytes.
	var files int
	if _, err := fmt.Sscanf(out[strings.Index(out, "files="):], "files=%d", &files); err != nil || files > limit/4096 || files < limit/4096-100 {
		t.Errorf("the job created %d empty files (%v), want its inode bound %d less the few it had", files, err, limit/4096)
	}
	// The job tried to write 1 GiB: had any of it reached the node's disk,
	// free space would drop by far more than the limit. The slack is for
	// other writers on a shared machine (the test command runs packages in
	// parallel), which this measurement cannot tell apart.
	const othersSlack = 256 << 20
	if drop := before - after; drop > limit+othersSlack {
		t.Fatalf("the node's free space dropped by %d bytes during the job, more than its disk limit %d (+%d for other writers)", drop, limit, othersSlack)
	}
	if entries, err := os.ReadDir(s.WorkDir); err != nil || len(entries) != 0 {
		t.Fatalf("the host's work dir %s holds %v (%v): the job's files must stay in its tmpfs", s.WorkDir, entries, err)
	}
}

func freeBytes(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * st.Bsize
}
