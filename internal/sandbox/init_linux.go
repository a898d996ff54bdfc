package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"syscall"

	seccomp "github.com/elastic/go-seccomp-bpf"
	"golang.org/x/sys/unix"
)

// The re-exec hook (the moby/sys/reexec pattern, written out): startContained
// runs /proc/self/exe with argv[0] = initName in fresh namespaces, and this
// init function turns that process into the sandbox's init before main of
// whichever binary imports this package (joblet, a test binary) runs.
//
// The init sets the sandbox up as root, drops to the job user, starts the
// command as its child and stays PID 1 of the job's PID namespace, like
// tini: the command is an ordinary process (SIGTERM and `kill -9 $$` act on
// it as anywhere else, where PID 1 would ignore them), the init forwards
// signals to it, reaps orphans, and exits with it, which makes the kernel
// kill whatever else the job left in the namespace.
func init() {
	if len(os.Args) == 0 || os.Args[0] != initName {
		return
	}
	// PR_SET_NO_NEW_PRIVS is per thread and inherited through fork: set it
	// on the thread that starts the command.
	runtime.LockOSThread()
	status := os.NewFile(fdStatus, "init-status")
	code, sig, err := sandboxInit(status)
	if err != nil {
		fmt.Fprintf(status, "sandbox init: %v", err)
		os.Exit(127)
	}
	fmt.Fprintf(status, "exit %d %d\n", code, sig)
	if sig != 0 {
		os.Exit(128 + sig)
	}
	os.Exit(code)
}

// sandboxInit sets up, runs the command and returns its exit code and the
// signal that killed it (0 if none).
func sandboxInit(status *os.File) (code, sig int, err error) {
	// Nothing of ours reaches the command: close-on-exec every inherited fd
	// above stderr (the Go runtime's are already; the pipes are not).
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return 0, 0, fmt.Errorf("close inherited fds: %w", err)
	}
	var cfg initConfig
	if err := json.NewDecoder(os.NewFile(fdConfig, "init-config")).Decode(&cfg); err != nil {
		return 0, 0, fmt.Errorf("read config: %w", err)
	}
	// Wait until the parent has placed us in the job's cgroup.
	var b [1]byte
	if n, _ := os.NewFile(fdGo, "init-go").Read(b[:]); n != 1 {
		return 0, 0, fmt.Errorf("the server did not release the init (cgroup placement failed)")
	}
	// Assembled while nothing waits on it; loaded just before the command.
	filter, err := jobFilter()
	if err != nil {
		return 0, 0, err
	}
	unix.Umask(0o022)
	if err := setupMounts(cfg); err != nil {
		return 0, 0, err
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return 0, 0, fmt.Errorf("set hostname %q (UTS namespace): %w", cfg.Hostname, err)
	}
	if cfg.Network != NetHost {
		if err := loopbackUp(); err != nil {
			return 0, 0, fmt.Errorf("bring up lo in the job's network namespace: %w", err)
		}
	}
	// Resolve the command as the job will, with the job's PATH (our
	// environment is already the job's), before dropping privileges.
	path, err := exec.LookPath(cfg.Path)
	if err != nil {
		return 0, 0, fmt.Errorf("command %q: %w", cfg.Path, err)
	}
	if err := emptyBoundingSet(); err != nil {
		return 0, 0, err
	}
	if err := dropPrivileges(cfg); err != nil {
		return 0, 0, err
	}
	if err := os.Chdir(cfg.WorkDir); err != nil {
		return 0, 0, fmt.Errorf("chdir to the work dir as uid %d: %w (every directory above it must be searchable by others)", cfg.UID, err)
	}
	// Before the command exists, so no signal meant for it is lost.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)
	// Last: every thread of the init is filtered too (TSYNC), and all it
	// does from here (fork, exec, wait, kill, write) the filter allows.
	if err := seccomp.LoadFilter(filter); err != nil {
		return 0, 0, fmt.Errorf("load the syscall filter: %w", err)
	}
	child, err := syscall.ForkExec(path, append([]string{cfg.Path}, cfg.Args...),
		&syscall.ProcAttr{Env: os.Environ(), Files: []uintptr{0, 1, 2}})
	if err != nil {
		return 0, 0, fmt.Errorf("exec %q: %w", path, err)
	}
	if _, err := status.WriteString("ok\n"); err != nil {
		return 0, 0, err
	}
	go func() {
		for s := range sigs {
			_ = syscall.Kill(child, s.(syscall.Signal))
		}
	}()
	// Reap everything (orphans are re-parented to us) until the command ends.
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, 0, nil)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("wait for the command: %w", err)
		}
		if pid == child {
			if ws.Signaled() {
				return -1, int(ws.Signal()), nil
			}
			return ws.ExitStatus(), 0, nil
		}
	}
}

// forwarded are the signals the init passes on to the command.
var forwarded = []os.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
	syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGWINCH, syscall.SIGCONT}

// dropPrivileges becomes the job user for good: no groups, no capabilities
// (setuid from root to non-root clears them), no way back via setuid
// binaries or file capabilities.
func dropPrivileges(cfg initConfig) error {
	if cfg.UID == 0 {
		return fmt.Errorf("refusing to run a job as uid 0")
	}
	// syscall.Set* apply to every thread of the process (Go ≥ 1.16).
	if err := syscall.Setgroups([]int{}); err != nil {
		return fmt.Errorf("setgroups: %w", err)
	}
	if err := syscall.Setgid(cfg.GID); err != nil {
		return fmt.Errorf("setgid %d: %w", cfg.GID, err)
	}
	if err := syscall.Setuid(cfg.UID); err != nil {
		return fmt.Errorf("setuid %d: %w", cfg.UID, err)
	}
	if err := unix.Prctl(unix.PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_NO_NEW_PRIVS: %w", err)
	}
	// Changing credentials cleared the parent-death signal the server set.
	if err := unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(syscall.SIGKILL), 0, 0, 0); err != nil {
		return fmt.Errorf("PR_SET_PDEATHSIG: %w", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo: a fresh network namespace has it down.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return err
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP | unix.IFF_RUNNING)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr)
}
