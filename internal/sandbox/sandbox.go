// Package sandbox starts a command contained: as an unprivileged user, with
// an explicit environment, in its own PID, mount, UTS, IPC and (by default)
// network namespaces, inside a cgroup that bounds its memory, CPU and
// process count and lets Kill take everything it started.
//
// It is pure mechanism: no policy (defaults, ceilings, who may run what)
// lives here. Linux only; the server runs as root.
package sandbox

import (
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Isolation modes.
const (
	// Full is every containment this package offers; the default.
	Full = "full"
	// None runs the command as a plain child in its own process group, as
	// the server's user: an explicit opt-out for a laptop demo.
	None = "none"
)

// Network modes.
const (
	// NetNone gives the job its own network namespace with only loopback
	// up: it reaches neither the node's services nor the metadata endpoint.
	NetNone = "none"
	// NetHost shares the node's network namespace.
	NetHost = "host"
)

// MinimalPath is the PATH every job gets unless its request sets one.
const MinimalPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Limits bound one job; a zero field means no limit.
type Limits struct {
	MemoryBytes int64
	CPUPercent  int // of one core: 50 is half a core, 200 two cores
	MaxProcs    int
	// DiskBytes sizes the one tmpfs that holds everything the job can
	// write (its work dir, /tmp, /dev/shm): past it, writes fail with
	// ENOSPC. Its pages are charged to the job's memory cgroup, so files
	// count toward MemoryBytes too and the node's RAM per job stays
	// MemoryBytes. Zero: tmpfs's own default size (half the node's RAM).
	DiskBytes int64
}

// Spec is what to run and how to contain it.
type Spec struct {
	ID        string // names the cgroup and the hostname (job-<ID>)
	Isolation string // Full (default) or None
	Path      string // the command, looked up in Env's PATH
	Args      []string
	// Env is the job's whole environment: nothing of the caller's is added
	// except the PATH, HOME and LANG defaults (see JobEnv).
	Env     []string
	WorkDir string // the job's own writable directory, HOME; must exist
	UID     int
	GID     int
	Network string // NetNone (default) or NetHost
	// Hide lists paths the job must not see: directories become empty
	// read-only tmpfs mounts, files read as /dev/null.
	Hide   []string
	Limits Limits
}

// Exit is how a process ended.
type Exit struct {
	Code      int            // exit status; -1 when killed by a signal
	Signal    syscall.Signal // the signal that killed it; 0 when it exited
	OOMKilled bool           // the kernel killed a process of the job at its memory limit
	CPU       time.Duration
}

// Process is a started job.
type Process struct {
	spec Spec
	wait func() (code int, sig syscall.Signal, err error)
	cg   cgroup // nil with isolation none
	pid  int
	done chan struct{}
	exit Exit

	// mu orders Kill's use of the cgroup before Wait's removal of it.
	mu    sync.Mutex
	ended bool
}

// Start starts spec's command writing to stdout and stderr. With Full
// isolation it returns once the command has been exec'd inside the sandbox,
// or with the error that stopped the sandbox's init from getting there.
func Start(spec Spec, stdout, stderr io.Writer) (*Process, error) {
	if spec.Path == "" {
		return nil, errors.New("sandbox: no command given")
	}
	if spec.WorkDir == "" || !filepath.IsAbs(spec.WorkDir) {
		return nil, fmt.Errorf("sandbox: work dir %q must be an absolute path", spec.WorkDir)
	}
	switch spec.Isolation {
	case None:
		return startPlain(spec, stdout, stderr)
	case Full, "":
		spec.Isolation = Full
		return startContained(spec, stdout, stderr)
	}
	return nil, fmt.Errorf("sandbox: isolation %q: use %q or %q", spec.Isolation, Full, None)
}

// Pid is the job's first process as the host sees it.
func (p *Process) Pid() int { return p.pid }

// Wait waits for the job's first process, then for the rest of the job to
// be gone, records how it ended and removes its cgroup. Safe to call from
// one goroutine; others use Done.
func (p *Process) Wait() Exit {
	code, sig, _ := p.wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.ended = true
	p.exit = Exit{Code: code, Signal: sig}
	if p.cg != nil {
		// The first process was PID 1 of its namespace, so the kernel kills
		// the rest; kill the cgroup too so nothing can delay the cleanup.
		_ = p.cg.kill()
		p.exit.OOMKilled = p.cg.oomKilled()
		p.exit.CPU = p.cg.cpuUsage()
		_ = p.cg.remove()
	}
	close(p.done)
	return p.exit
}

// Done is closed when Wait has returned.
func (p *Process) Done() <-chan struct{} { return p.done }

// JobEnv is env with the minimal defaults added for keys it lacks.
func JobEnv(env []string, home string) []string {
	out := append([]string(nil), env...)
	have := map[string]bool{}
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		have[k] = true
	}
	for _, kv := range []string{"PATH=" + MinimalPath, "HOME=" + home, "LANG=C.UTF-8"} {
		if k, _, _ := strings.Cut(kv, "="); !have[k] {
			out = append(out, kv)
		}
	}
	return out
}
