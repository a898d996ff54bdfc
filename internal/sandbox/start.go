package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
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
}

// The init's extra files, in ExtraFiles order.
const (
	fdConfig = 3 // read: initConfig
	fdGo     = 4 // read: one byte once the parent has placed it in its cgroup
	fdErr    = 5 // write: an error message, or EOF on a successful exec
)

func startContained(spec Spec, stdout, stderr io.Writer) (p *Process, err error) {
	cg, err := newCgroup(spec.ID, spec.Limits)
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
	defer errR.Close()

	flags := syscall.CLONE_NEWPID | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC
	if spec.Network != NetHost {
		flags |= syscall.CLONE_NEWNET
	}
	cmd := &exec.Cmd{
		Path: "/proc/self/exe", // this binary, even if replaced on disk since
		Args: []string{initName},
		// The init itself already holds only the job's environment, so
		// /proc/<pid>/environ of the init never shows the server's.
		Env:         JobEnv(spec.Env, spec.WorkDir),
		Stdout:      stdout,
		Stderr:      stderr,
		ExtraFiles:  []*os.File{cfgR, goR, errW},
		SysProcAttr: &syscall.SysProcAttr{Cloneflags: uintptr(flags)},
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
		Hostname: "job-" + spec.ID, Network: spec.Network, Hide: spec.Hide}
	if err := json.NewEncoder(cfgW).Encode(cfg); err != nil {
		return abort(fmt.Errorf("sandbox: send config to init: %w", err))
	}
	cfgW.Close()
	// Into the cgroup before the init goes on: nothing of the job ever runs
	// outside its limits.
	if err := cg.add(cmd.Process.Pid); err != nil {
		return abort(err)
	}
	if _, err := goW.Write([]byte{1}); err != nil {
		return abort(fmt.Errorf("sandbox: release init: %w", err))
	}
	goW.Close()
	// errW is close-on-exec in the init: EOF with nothing read means the
	// command was exec'd.
	msg, _ := io.ReadAll(errR)
	if len(msg) > 0 {
		return abort(errors.New(string(msg)))
	}
	p = &Process{spec: spec, cg: cg, pid: cmd.Process.Pid, done: make(chan struct{})}
	p.wait = func() (int, syscall.Signal, error) { return exitOf(cmd.Wait(), cmd.ProcessState) }
	return p, nil
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

// Signal sends sig to every process of the job. A job's first process is
// PID 1 of its namespace and, like any init, ignores signals it has no
// handler for (SIGKILL aside): Kill is what always works.
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
	for _, pid := range p.cg.pids() {
		_ = syscall.Kill(pid, sig)
	}
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
