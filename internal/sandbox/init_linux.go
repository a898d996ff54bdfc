package sandbox

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"syscall"

	"golang.org/x/sys/unix"
)

// The re-exec hook (the moby/sys/reexec pattern, written out): startContained
// runs /proc/self/exe with argv[0] = initName in fresh namespaces, and this
// init function turns that process into the sandbox's init before main of
// whichever binary imports this package (joblet, a test binary) runs.
func init() {
	if len(os.Args) == 0 || os.Args[0] != initName {
		return
	}
	// PR_SET_NO_NEW_PRIVS is per thread: set it on the thread that execs.
	runtime.LockOSThread()
	errPipe := os.NewFile(fdErr, "init-err")
	if err := sandboxInit(); err != nil {
		fmt.Fprintf(errPipe, "sandbox init: %v", err)
		os.Exit(127)
	}
	// Unreachable: sandboxInit execs or fails.
	os.Exit(127)
}

func sandboxInit() error {
	// Ours, the parent's error pipe, must not survive a successful exec.
	unix.CloseOnExec(fdErr)
	var cfg initConfig
	if err := json.NewDecoder(os.NewFile(fdConfig, "init-config")).Decode(&cfg); err != nil {
		return fmt.Errorf("read config: %w", err)
	}
	// Wait until the parent has placed us in the job's cgroup.
	var b [1]byte
	if n, _ := os.NewFile(fdGo, "init-go").Read(b[:]); n != 1 {
		return fmt.Errorf("the server did not release the init (cgroup placement failed)")
	}
	unix.Umask(0o022)
	if err := setupMounts(cfg); err != nil {
		return err
	}
	if err := unix.Sethostname([]byte(cfg.Hostname)); err != nil {
		return fmt.Errorf("set hostname %q (UTS namespace): %w", cfg.Hostname, err)
	}
	if cfg.Network != NetHost {
		if err := loopbackUp(); err != nil {
			return fmt.Errorf("bring up lo in the job's network namespace: %w", err)
		}
	}
	// Resolve the command as the job will, with the job's PATH (our
	// environment is already the job's), before dropping privileges.
	path, err := exec.LookPath(cfg.Path)
	if err != nil {
		return fmt.Errorf("command %q: %w", cfg.Path, err)
	}
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
	if err := os.Chdir(cfg.WorkDir); err != nil {
		return fmt.Errorf("chdir to the work dir as uid %d: %w (every directory above it must be searchable by others)", cfg.UID, err)
	}
	// Nothing the server had open reaches the job: close-on-exec every fd
	// above stderr (the Go runtime's are already; the pipes are not).
	if err := unix.CloseRange(3, ^uint(0), unix.CLOSE_RANGE_CLOEXEC); err != nil {
		return fmt.Errorf("close inherited fds: %w", err)
	}
	if err := syscall.Exec(path, append([]string{cfg.Path}, cfg.Args...), os.Environ()); err != nil {
		return fmt.Errorf("exec %q: %w", path, err)
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
