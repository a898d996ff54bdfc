// Package jobs runs commands contained (an unprivileged user, their own
// namespaces, cgroup and files, a syscall filter: the containment.Runtime
// internal/sandbox registers), enforces the node's caps, and keeps their
// state and a bounded tail of their output in memory.
package jobs

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/ehsaniara/joblet/internal/containment"
	"github.com/ehsaniara/joblet/internal/jobid"
)

// Status of a job.
const (
	Running   = "RUNNING"
	Completed = "COMPLETED" // exited 0
	Failed    = "FAILED"    // exited non-zero, by a signal it was not sent by Stop, or at its memory limit
	Stopped   = "STOPPED"   // ended by Stop
)

// ErrNotFound is returned for an unknown job id.
var ErrNotFound = errors.New("job not found")

// Snapshot is a job's state at one moment.
type Snapshot struct {
	ID, Command    string
	Args           []string
	Status         string
	ExitCode       int // -1 when a signal ended the job
	Signal         int // the signal that ended the job, 0 if it exited
	Started, Ended time.Time
	// StartedBy is the role of the caller that started the job (what the
	// per-job rules go by), StartedByPerson the person when the caller's
	// certificate named one (`rnx login`), "" for a shared role
	// certificate.
	StartedBy, StartedByPerson string
	OutputTruncated            bool
	// Reason says how the job ended: "exit code 3", "killed by SIGSEGV",
	// "killed at its memory limit (512 MiB)", "stopped".
	Reason string
	Limits Limits // in force: the request's, or the node's defaults
}

type job struct {
	id, command, startedBy string
	person                 string // StartedByPerson
	args                   []string
	started                time.Time
	proc                   containment.Process
	dir                    string // the job's work dir, removed when it is evicted
	limits                 Limits
	out                    *output
	done                   chan struct{}

	mu       sync.Mutex
	status   string
	exitCode int
	reason   string
	signal   int
	ended    time.Time
	stopping bool
}

// Manager owns the jobs of one node.
type Manager struct {
	opts        Options
	logBytes    int
	grace       time.Duration
	uid, gid    int
	hide        []string
	unavailable error               // why isolation full cannot work here; nil when it can
	runDir      string              // this Manager's work dirs (sweep.go)
	runLock     *os.File            // held while the process lives
	rt          containment.Runtime // internal/sandbox, when the binary links it

	mu      sync.Mutex
	jobs    map[string]*job
	running int
}

// Request is one job to run.
type Request struct {
	Command         string
	Args, Env       []string
	Limits          Limits // zero fields: the node's defaults
	StartedBy       string // the caller's role
	StartedByPerson string // the caller's person, "" for a shared role certificate
}

// Run starts command with args on behalf of startedBy.
func (m *Manager) Run(command string, args []string, startedBy string) (Snapshot, error) {
	return m.Start(Request{Command: command, Args: args, StartedBy: startedBy})
}

// Start runs r contained, or refuses it with ErrLimit or ErrUnavailable.
func (m *Manager) Start(r Request) (Snapshot, error) {
	if r.Command == "" {
		return Snapshot{}, errors.New("no command given")
	}
	if m.unavailable != nil {
		return Snapshot{}, fmt.Errorf("%w: %v", ErrUnavailable, m.unavailable)
	}
	if err := checkEnv(r.Env); err != nil {
		return Snapshot{}, err
	}
	lim, err := m.limits(r.Limits)
	if err != nil {
		return Snapshot{}, err
	}
	id, err := jobid.New(m.opts.Node)
	if err != nil {
		return Snapshot{}, err
	}
	m.mu.Lock()
	if err := m.admit(r); err != nil {
		m.mu.Unlock()
		return Snapshot{}, err
	}
	m.running++ // reserved now, so concurrent requests cannot pass the cap
	m.mu.Unlock()
	j := &job{id: id, command: r.Command, args: append([]string(nil), r.Args...), startedBy: r.StartedBy, person: r.StartedByPerson,
		limits: lim, out: newOutput(m.logBytes), done: make(chan struct{}), status: Running}
	if j.dir, err = m.rt.MakeWorkDir(m.runDir, id, m.uid, m.gid); err == nil {
		j.proc, err = m.rt.Start(m.spec(id, j.dir, &r, lim), j.out.writer(Stdout), j.out.writer(Stderr))
	}
	if err != nil {
		m.mu.Lock()
		m.running--
		m.mu.Unlock()
		if j.dir != "" {
			_ = os.RemoveAll(j.dir)
		}
		return Snapshot{}, err
	}
	j.started = time.Now()
	m.mu.Lock()
	m.jobs[id] = j
	m.mu.Unlock()
	snap := j.snapshot() // before wait can record an end: Run reports it running
	go m.wait(j)
	return snap, nil
}

func (m *Manager) wait(j *job) {
	e := j.proc.Wait()
	j.mu.Lock()
	j.ended = time.Now()
	j.exitCode = e.Code
	j.signal = int(e.Signal)
	j.status, j.reason = ending(e, j.stopping, j.limits)
	j.mu.Unlock()
	// Before done: whoever Stop returns to may start the next job at once.
	m.mu.Lock()
	m.running--
	m.evict()
	m.mu.Unlock()
	j.out.close()
	close(j.done)
}

func (j *job) snapshot() Snapshot {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Snapshot{ID: j.id, Command: j.command, Args: j.args, Status: j.status, ExitCode: j.exitCode, Signal: j.signal,
		Started: j.started, Ended: j.ended, StartedBy: j.startedBy, StartedByPerson: j.person, OutputTruncated: j.out.truncated(), Reason: j.reason,
		Limits: j.limits}
}

func (m *Manager) get(id string) (*job, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	j, ok := m.jobs[id]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrNotFound, id)
	}
	return j, nil
}

// Status returns one job.
func (m *Manager) Status(id string) (Snapshot, error) {
	j, err := m.get(id)
	if err != nil {
		return Snapshot{}, err
	}
	return j.snapshot(), nil
}

// List returns every job, oldest first: by start time, then id, an order
// that stays put while jobs come and go (ListJobs pages resume from it).
func (m *Manager) List() []Snapshot {
	m.mu.Lock()
	all := make([]*job, 0, len(m.jobs))
	for _, j := range m.jobs {
		all = append(all, j)
	}
	m.mu.Unlock()
	out := make([]Snapshot, len(all))
	for i, j := range all {
		out[i] = j.snapshot()
	}
	sort.Slice(out, func(a, b int) bool { return Before(out[a], out[b]) })
	return out
}

// Before is List's order: start time, then id.
func Before(a, b Snapshot) bool {
	if !a.Started.Equal(b.Started) {
		return a.Started.Before(b.Started)
	}
	return a.ID < b.ID
}

// Stop sends SIGTERM to every process of the job, then after the grace
// period kills the whole job (its cgroup, setsid'd processes included), and
// returns once the job has ended (or ctx is done).
func (m *Manager) Stop(ctx context.Context, id string) (Snapshot, error) {
	j, err := m.get(id)
	if err != nil {
		return Snapshot{}, err
	}
	j.mu.Lock()
	running := j.status == Running
	if running {
		j.stopping = true
	}
	j.mu.Unlock()
	if !running {
		return j.snapshot(), nil
	}
	j.proc.Signal(syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(m.grace):
		if err := j.proc.Kill(); err != nil {
			return j.snapshot(), err
		}
		select {
		case <-j.done:
		case <-ctx.Done():
			return j.snapshot(), ctx.Err()
		}
	case <-ctx.Done():
		return j.snapshot(), ctx.Err()
	}
	return j.snapshot(), nil
}

// Logs calls send with the job's output, one stream per chunk in the order
// written; with follow it keeps sending new output until the job ends or ctx
// is done. A chunk's Dropped says how much output the cap dropped before it.
func (m *Manager) Logs(ctx context.Context, id string, follow bool, send func(Chunk) error) error {
	j, err := m.get(id)
	if err != nil {
		return err
	}
	var off int64
	for {
		c, next, done, more := j.out.readFrom(off, maxChunk)
		off = next
		if len(c.Data) > 0 {
			if err := send(c); err != nil {
				return err
			}
			if next < j.out.end() {
				continue // more is already there: no need to wait
			}
		}
		if !follow || done {
			return nil
		}
		select {
		case <-more:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// maxChunk bounds one log message: many followers each holding a whole
// log buffer in flight would multiply the memory the caps are meant to bound.
const maxChunk = 32 << 10

// Shutdown stops every running job, for a server going down, and removes
// the jobs' work dirs: their records go with the process.
func (m *Manager) Shutdown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range m.List() {
		if s.Status == Running {
			wg.Add(1)
			go func(id string) { defer wg.Done(); m.Stop(ctx, id) }(s.ID)
		}
	}
	wg.Wait()
	m.removeWorkDirs()
	m.releaseRun()
}
