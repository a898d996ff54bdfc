package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// initName is argv[0] of the re-executed binary that sets the sandbox up
// from inside its namespaces (see init_linux.go).
const initName = "joblet-sandbox-init"

// initConfig travels to the init on fd 3 as JSON.
type initConfig struct {
	Path     string
	Args     []string
	WorkDir  string
	UID, GID int
	Hostname string
	Network  string
	Hide     []string
	Disk     int64 // bytes of the job's files; 0: tmpfs's default
}

// The init's extra files, in ExtraFiles order.
const (
	fdConfig = 3 // read: initConfig
	fdGo     = 4 // read: one byte once the parent has placed it in its cgroup
	fdStatus = 5 // write: "ok\n" once the command runs, then "exit CODE SIGNAL\n"; or an error and EOF
)

// The sandbox's init is a Go runtime with several threads, and pids.max
// counts threads: it starts with initTasks of room on top of MaxProcs, and
// once the command runs the init's own threads (plus initSlack for one it
// may still start) replace that, so MaxProcs is about the job's own tasks.
const (
	initTasks = 64
	initSlack = 2
)

func startContained(spec Spec, stdout, stderr io.Writer) (p *Process, err error) {
	lim := spec.Limits
	if lim.MaxProcs > 0 {
		lim.MaxProcs += initTasks
	}
	cg, err := newCgroup(spec.ID, lim, spec.JobsMemory)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = cg.remove()
		}
	}()
	cfgR, cfgW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	goR, goW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer cfgW.Close()
	defer goW.Close()
	defer func() {
		if err != nil {
			errR.Close()
		}
	}()

	flags := syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
	if spec.Network != NetHost {
		flags |= syscall.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe", // this binary, even if replaced on disk since
		Args: []string{initName},
		// The init itself already holds only the job's environment, so
		// /proc/<pid>/environ of the init never shows the server's.
		Env:        JobEnv(spec.Env, spec.WorkDir),
		Stdout:     stdout,
		Stderr:     stderr,
		ExtraFiles: []*os.File{cfgR, goR, errW},
		// Jobs die with the server: their records live in its memory, so a
		// job outliving it could be neither seen nor stopped. (Cleared by the
		// init's setuid; it sets it again.)
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: uintptr(flags), Pdeathsig: syscall.SIGKILL},
	}
	err = cmd.Start()
	cfgR.Close()
	goR.Close()
	errW.Close()
	if err != nil {
		return nil, fmt.Errorf("sandbox: start init (namespaces %s): %w", nsNames(flags), err)
	}
	abort := func(e error) (*Process, error) {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, e
	}
	cfg := initConfig{Path: spec.Path, Args: spec.Args, WorkDir: spec.WorkDir, UID: spec.UID, GID: spec.GID,
		Hostname: "job-" + spec.ID, Network: spec.Network, Hide: spec.Hide, Disk: spec.Limits.DiskBytes}
	if err := json.NewEncoder(cfgW).Encode(cfg); err != nil {
		return abort(fmt.Errorf("sandbox: send config to init: %w", err))
	}
	cfgW.Close()
	// Into the cgroup before the init goes on: nothing of the job ever runs
	// outside its limits.
	if err := cg.add(cmd.Process.Pid); err != nil {
		return abort(err)
	}
	// The server may be shielded from the OOM killer (the unit's
	// OOMScoreAdjust=-500), which children inherit: a job goes back to the
	// default, so that at the node's limit the kernel picks a job first.
	// Only raised (always permitted), never lowered (CAP_SYS_RESOURCE).
	if b, _ := os.ReadFile("/proc/self/oom_score_adj"); strings.HasPrefix(strings.TrimSpace(string(b)), "-") {
		if err := os.WriteFile(fmt.Sprintf("/proc/%d/oom_score_adj", cmd.Process.Pid), []byte("0"), 0); err != nil {
			return abort(fmt.Errorf("sandbox: reset the job's oom_score_adj: %w", err))
		}
	}
	if _, err := goW.Write([]byte{1}); err != nil {
		return abort(fmt.Errorf("sandbox: release init: %w", err))
	}
	goW.Close()
	status := bufio.NewReader(errR)
	if line, _ := status.ReadString('\n'); line != "ok\n" {
		rest, _ := io.ReadAll(status)
		msg := strings.TrimSpace(line + string(rest))
		if msg == "" {
			msg = "sandbox init: ended before starting the command"
		}
		return abort(errors.New(msg))
	}
	if spec.Limits.MaxProcs > 0 {
		if err := cg.limitPids(spec.Limits.MaxProcs + threads(cmd.Process.Pid) + initSlack); err != nil {
			return abort(err)
		}
	}
	p = &Process{spec: spec, cg: cg, pid: cmd.Process.Pid, done: make(chan struct{})}
	p.wait = func() (int, syscall.Signal, error) {
		werr := cmd.Wait()
		defer errR.Close()
		// The command's own status, as the init saw it; absent when the
		// init itself was killed (Kill, or the OOM killer picking it).
		var code, sig int
		if line, _ := status.ReadString('\n'); strings.HasPrefix(line, "exit ") {
			if _, err := fmt.Sscanf(line, "exit %d %d", &code, &sig); err == nil {
				return code, syscall.Signal(sig), nil
			}
		}
		return exitOf(werr, cmd.ProcessState)
	}
	return p, nil
}

// threads is the number of threads of pid (0 if unknown).
func threads(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Threads:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(v))
			return n
		}
	}
	return 0
}

func nsNames(flags int) string {
	s := "pid,mnt,uts,ipc"
	if flags&syscall.CLONE_NEWNET != 0 {
		s += ",net"
	}
	return s
}

// startPlain is isolation none: the server's user, its own process group,
// but still only the job's environment and its own directory.
func startPlain(spec Spec, stdout, stderr io.Writer) (*Process, error) {
	cmd := exec.Command(spec.Path, spec.Args...)
	cmd.Env = JobEnv(spec.Env, spec.WorkDir)
	cmd.Dir = spec.WorkDir
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %q: %w", spec.Path, err)
	}
	p := &Process{spec: spec, pid: cmd.Process.Pid, done: make(chan struct{})}
	p.wait = func() (int, syscall.Signal, error) { return exitOf(cmd.Wait(), cmd.ProcessState) }
	return p, nil
}

func exitOf(err error, ps *os.ProcessState) (int, syscall.Signal, error) {
	if ps == nil {
		return -1, 0, err
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return -1, ws.Signal(), nil
	}
	return ps.ExitCode(), 0, nil
}

// Signal sends sig to the job's command (as `docker stop` does): the
// sandbox's init forwards it. Kill is what takes everything.
func (p *Process) Signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	if p.cg == nil {
		_ = syscall.Kill(-p.pid, sig)
		return
	}
	_ = syscall.Kill(p.pid, sig)
}

// KillTimeout bounds how long Kill waits for the job to be gone.
const KillTimeout = 5 * time.Second

// Kill kills everything the job started, including what it detached with
// setsid, and returns once the job has ended (or KillTimeout has passed).
func (p *Process) Kill() error {
	if err := p.killAll(); err != nil {
		return err
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(KillTimeout):
		return fmt.Errorf("sandbox: job %s still running %s after SIGKILL", p.spec.ID, KillTimeout)
	}
}

func (p *Process) killAll() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return nil // Wait has reaped it and removed its cgroup
	}
	if p.cg == nil {
		return syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	// Killing the cgroup takes every process in it, forks included (v1 via
	// the freezer); killing PID 1 of the job's PID namespace from outside
	// takes the whole namespace as well.
	err := p.cg.kill()
	_ = syscall.Kill(p.pid, syscall.SIGKILL)
	return err
}
