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

	"github.com/ehsaniara/joblet/internal/containment"
)

// MinimalPath is the PATH every job gets unless its request sets one.
const MinimalPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// The contract's vocabulary (internal/containment), under this package's
// names: the package's own code and tests speak them.
const (
	Full    = containment.Full
	None    = containment.None
	NetNone = containment.NetNone
	NetHost = containment.NetHost
)

type (
	Limits = containment.Limits
	Spec   = containment.Spec
	Exit   = containment.Exit
)

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
