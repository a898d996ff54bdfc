// Package jobs runs commands as child processes, each in its own process
// group, and keeps their state and a bounded tail of their output in memory.
package jobs

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os/exec"
	"sort"
	"sync"
	"syscall"
	"time"
)

// Status of a job.
const (
	Running   = "RUNNING"
	Completed = "COMPLETED" // exited 0
	Failed    = "FAILED"    // exited non-zero or by a signal it was not sent by Stop
	Stopped   = "STOPPED"   // ended by Stop
)

// ErrNotFound is returned for an unknown job id.
var ErrNotFound = errors.New("job not found")

// Snapshot is a job's state at one moment.
type Snapshot struct {
	ID, Command     string
	Args            []string
	Status          string
	ExitCode        int // -1 when a signal ended the job
	Signal          int // the signal that ended the job, 0 if it exited
	Started, Ended  time.Time
	StartedBy       string
	OutputTruncated bool
}

type job struct {
	id, command, startedBy string
	args                   []string
	started                time.Time
	cmd                    *exec.Cmd
	out                    *output
	done                   chan struct{}

	mu       sync.Mutex
	status   string
	exitCode int
	signal   int
	ended    time.Time
	stopping bool
}

// Manager owns the jobs of one node.
type Manager struct {
	logBytes int
	grace    time.Duration

	mu   sync.Mutex
	jobs map[string]*job
}

// NewManager keeps at most logBytes of output per job and gives a stopped
// job grace between SIGTERM and SIGKILL.
func NewManager(logBytes int, grace time.Duration) *Manager {
	return &Manager{logBytes: logBytes, grace: grace, jobs: map[string]*job{}}
}

// Run starts command with args on behalf of startedBy.
func (m *Manager) Run(command string, args []string, startedBy string) (Snapshot, error) {
	if command == "" {
		return Snapshot{}, errors.New("no command given")
	}
	id, err := newID()
	if err != nil {
		return Snapshot{}, err
	}
	j := &job{id: id, command: command, args: append([]string(nil), args...), startedBy: startedBy,
		out: newOutput(m.logBytes), done: make(chan struct{}), status: Running}
	cmd := exec.Command(command, args...)
	// Own process group, so Stop reaches the job's children too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Stdout, cmd.Stderr = j.out.writer(Stdout), j.out.writer(Stderr)
	if err := cmd.Start(); err != nil {
		return Snapshot{}, fmt.Errorf("start %q: %w", command, err)
	}
	j.cmd, j.started = cmd, time.Now()
	m.mu.Lock()
	m.jobs[id] = j
	m.mu.Unlock()
	go j.wait()
	return j.snapshot(), nil
}

func (j *job) wait() {
	err := j.cmd.Wait()
	j.mu.Lock()
	j.ended = time.Now()
	j.exitCode = j.cmd.ProcessState.ExitCode()
	if ws, ok := j.cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		j.signal = int(ws.Signal())
	}
	switch {
	case j.stopping:
		j.status = Stopped
	case err == nil:
		j.status = Completed
	default:
		j.status = Failed
	}
	j.mu.Unlock()
	j.out.close()
	close(j.done)
}

func (j *job) snapshot() Snapshot {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Snapshot{ID: j.id, Command: j.command, Args: j.args, Status: j.status, ExitCode: j.exitCode, Signal: j.signal,
		Started: j.started, Ended: j.ended, StartedBy: j.startedBy, OutputTruncated: j.out.truncated()}
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

// List returns every job, oldest first.
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
	sort.Slice(out, func(a, b int) bool { return out[a].Started.Before(out[b].Started) })
	return out
}

// Stop sends SIGTERM to the job's process group, then SIGKILL after the
// grace period, and returns once the job has ended (or ctx is done).
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
	pgid := j.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-j.done:
	case <-time.After(m.grace):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
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

// Shutdown stops every running job, for a server going down.
func (m *Manager) Shutdown(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range m.List() {
		if s.Status == Running {
			wg.Add(1)
			go func(id string) { defer wg.Done(); m.Stop(ctx, id) }(s.ID)
		}
	}
	wg.Wait()
}

func newID() (string, error) {
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("job id: %w", err)
	}
	return hex.EncodeToString(b), nil
}
