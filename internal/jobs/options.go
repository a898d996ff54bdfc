package jobs

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/containment"
)

// Limits bound one job. In a Request a zero field takes the node's default;
// in Options.Max a zero field makes the default the ceiling. The server's
// API speaks these, not the mechanism's (internal/containment).
type Limits struct {
	MemoryBytes int64
	CPUPercent  int // of one core: 50 is half a core, 200 two cores
	MaxProcs    int
	// DiskBytes bounds the job's files: its work dir, /tmp and /dev/shm
	// share one tmpfs of this size. Its pages are charged to the job's
	// memory cgroup: files count toward MemoryBytes as well.
	DiskBytes int64
}

// Isolation and network modes (jobs.isolation, jobs.network).
const (
	IsolationFull = containment.Full
	IsolationNone = containment.None
	NetworkNone   = containment.NetNone
	NetworkHost   = containment.NetHost
)

// ErrLimit wraps every refusal for a cap of the node (running jobs, request
// size, a limit above its ceiling); the message names the config key.
var ErrLimit = errors.New("limit reached")

// ErrUnavailable wraps refusals because the node cannot contain jobs as its
// config asks; the message says what is missing and the fix.
var ErrUnavailable = errors.New("jobs unavailable on this node")

// Options configure a Manager; zero fields take the defaults below.
type Options struct {
	Isolation string // IsolationFull (default) or IsolationNone
	User      string // the job user; default joblet-job (internal/sandbox)
	Network   string // NetworkNone (default) or NetworkHost
	// JobsDir holds one private work dir per job; default
	// $TMPDIR/joblet-jobs. Jobs never see it, only their own directory.
	JobsDir string
	// Hide is masked in every job's view, on top of /root and the server's
	// $HOME (where credentials such as ~/.aws live) and JobsDir.
	Hide []string
	// Default applies to a request that sets no limit; Max caps what a
	// request may ask for (0: the default is also the ceiling).
	Default, Max Limits
	MaxRunning   int // jobs running at once
	// MemoryTotal limits the memory of all running jobs together (their
	// parent cgroup); default DefaultMemoryShare of the node's RAM.
	MemoryTotal     int64
	MaxKept         int // finished jobs kept; the oldest go with their output and work dir
	MaxRequestBytes int // command + args + env of one request
	OutputBytes     int // output kept per job
	Grace           time.Duration
	Log             *slog.Logger
	// Node is the node's id, which starts every job ID (internal/jobid)
	// so a client finds the job's node from its ID.
	Node string
}

// Defaults for Options.
const (
	DefaultMaxRunning      = 32
	DefaultMaxKept         = 256
	DefaultMaxRequestBytes = 64 << 10
	DefaultOutputBytes     = 1 << 20
	DefaultMemory          = 512 << 20
	DefaultCPUPercent      = 100
	DefaultMaxProcs        = 256
	DefaultDisk            = 256 << 20
	// DefaultMemoryShare is the percentage of the node's RAM all jobs
	// together may use: the rest keeps the server and the system alive.
	DefaultMemoryShare = 75
)

// machineMemory is the node's RAM (MemTotal), 0 when unknown (no limit).
func machineMemory() int64 {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(rest), "kB")), 10, 64)
			if err != nil {
				return 0
			}
			return kb << 10
		}
	}
	return 0
}

func (o *Options) fill() {
	o.Isolation = cmpOr(o.Isolation, IsolationFull)
	o.Network = cmpOr(o.Network, NetworkNone)
	o.JobsDir = cmpOr(o.JobsDir, filepath.Join(os.TempDir(), "joblet-jobs"))
	o.MaxRunning = cmpOr(o.MaxRunning, DefaultMaxRunning)
	o.MemoryTotal = cmpOr(o.MemoryTotal, machineMemory()*DefaultMemoryShare/100)
	o.MaxKept = cmpOr(o.MaxKept, DefaultMaxKept)
	o.MaxRequestBytes = cmpOr(o.MaxRequestBytes, DefaultMaxRequestBytes)
	o.OutputBytes = cmpOr(o.OutputBytes, DefaultOutputBytes)
	// An unset default is the built-in one, or the ceiling when that is lower.
	o.Default.MemoryBytes = cmpOr(o.Default.MemoryBytes, minSet(DefaultMemory, o.Max.MemoryBytes))
	o.Default.CPUPercent = cmpOr(o.Default.CPUPercent, minSet(DefaultCPUPercent, o.Max.CPUPercent))
	o.Default.MaxProcs = cmpOr(o.Default.MaxProcs, minSet(DefaultMaxProcs, o.Max.MaxProcs))
	o.Default.DiskBytes = cmpOr(o.Default.DiskBytes, minSet(DefaultDisk, o.Max.DiskBytes))
	o.Max.MemoryBytes = cmpOr(o.Max.MemoryBytes, o.Default.MemoryBytes)
	o.Max.CPUPercent = cmpOr(o.Max.CPUPercent, o.Default.CPUPercent)
	o.Max.MaxProcs = cmpOr(o.Max.MaxProcs, o.Default.MaxProcs)
	o.Max.DiskBytes = cmpOr(o.Max.DiskBytes, o.Default.DiskBytes)
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

// minSet is the smaller of builtin and ceiling, ignoring an unset ceiling.
func minSet[T int | int64](builtin, ceiling T) T {
	if ceiling > 0 && ceiling < builtin {
		return ceiling
	}
	return builtin
}

func cmpOr[T comparable](v, dflt T) T {
	var zero T
	if v == zero {
		return dflt
	}
	return v
}

// New builds a Manager. Options that cannot work are an error; a node that
// cannot provide the isolation asked for is not: the Manager then refuses
// every job with ErrUnavailable naming what is missing (Isolation says so),
// so the node still serves status, logs and info.
func New(o Options) (*Manager, error) {
	o.fill()
	if d, x := o.Default, o.Max; d.MemoryBytes > x.MemoryBytes || d.CPUPercent > x.CPUPercent || d.MaxProcs > x.MaxProcs || d.DiskBytes > x.DiskBytes {
		return nil, fmt.Errorf("jobs: a default limit is above its ceiling (memoryDefault/memoryMax, cpuDefault/cpuMax, procsDefault/procsMax, diskDefault/diskMax)")
	}
	m := &Manager{opts: o, logBytes: o.OutputBytes, grace: o.Grace, jobs: map[string]*job{}, rt: containment.Registered()}
	if m.rt == nil {
		// A wiring mistake, not the node's: say so and serve the rest.
		m.unavailable = errors.New("this binary links no sandbox: the program must import internal/sandbox")
		o.Log.Error("jobs: refusing every job", "reason", m.unavailable)
		return m, nil
	}
	if err := m.claimRun(); err != nil {
		m.unavailable = err
		o.Log.Error("jobs: refusing every job: no work dir for them", "reason", err)
		return m, nil
	}
	if o.Isolation == IsolationNone {
		return m, nil
	}
	if all := int64(o.MaxRunning) * o.Max.MemoryBytes; o.MemoryTotal > 0 && all > o.MemoryTotal {
		o.Log.Warn("jobs.maxRunning jobs at jobs.memoryMax need more memory than all jobs may use together: when they do, the kernel kills a job's process at jobs.memoryTotal",
			"maxRunning", o.MaxRunning, "memoryMax", config.SizeText(o.Max.MemoryBytes), "together", config.SizeText(all), "memoryTotal", config.SizeText(o.MemoryTotal))
	}
	m.hide = append([]string{"/root", o.JobsDir}, o.Hide...)
	if h, err := os.UserHomeDir(); err == nil && h != "/" {
		m.hide = append(m.hide, h)
	}
	uid, gid, note, err := m.rt.JobUser(o.User)
	if note != "" {
		o.Log.Warn(note)
	}
	if err == nil {
		m.uid, m.gid = uid, gid
		err = m.probe()
	}
	if err == nil && o.Network == NetworkHost {
		// The job shares the node's network: at least the metadata endpoint
		// (the instance role's credentials) stays out of its reach.
		err = m.rt.GuardHostNetwork(uid)
	}
	if err != nil {
		m.unavailable = err
		o.Log.Error("jobs: refusing every job: this node cannot contain them as jobs.isolation: full asks", "reason", err)
	}
	return m, nil
}

// probe runs `true` fully contained, once: the proof that the kernel accepts
// every namespace, mount and cgroup a job needs.
func (m *Manager) probe() error {
	id := "probe-" + fmt.Sprint(os.Getpid())
	dir, err := m.rt.MakeWorkDir(m.runDir, id, m.uid, m.gid)
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	return m.rt.Probe(m.spec(id, dir, nil, m.opts.Default))
}

// Isolation describes the containment in force, for logs and node info.
func (m *Manager) Isolation() string {
	switch {
	case m.opts.Isolation == IsolationNone:
		return "none (jobs run as the server's user, unconfined)"
	case m.unavailable != nil:
		return "unavailable: " + m.unavailable.Error()
	}
	d, x := m.opts.Default, m.opts.Max
	return fmt.Sprintf("full (uid %d, network %s, syscall filter; per job memory %s, cpu %d%%, procs %d, disk %s by default, at most %s, %d%%, %d, %s)",
		m.uid, m.opts.Network, config.SizeText(d.MemoryBytes), d.CPUPercent, d.MaxProcs, config.SizeText(d.DiskBytes),
		config.SizeText(x.MemoryBytes), x.CPUPercent, x.MaxProcs, config.SizeText(x.DiskBytes))
}

func (m *Manager) spec(id, dir string, r *Request, lim Limits) containment.Spec {
	s := containment.Spec{ID: id, Isolation: m.opts.Isolation, WorkDir: dir, UID: m.uid, GID: m.gid,
		Network: m.opts.Network, Hide: m.hide, Limits: containment.Limits{MemoryBytes: lim.MemoryBytes,
			CPUPercent: lim.CPUPercent, MaxProcs: lim.MaxProcs, DiskBytes: lim.DiskBytes}, JobsMemory: m.opts.MemoryTotal}
	if r != nil {
		s.Path, s.Args, s.Env = r.Command, r.Args, r.Env
	}
	return s
}

// limits resolves a request's limits against the defaults and ceilings.
func (m *Manager) limits(req Limits) (Limits, error) {
	if req.MemoryBytes < 0 || req.CPUPercent < 0 || req.MaxProcs < 0 || req.DiskBytes < 0 {
		return Limits{}, fmt.Errorf("a negative limit (memory %d, cpu %d, procs %d, disk %d): give a positive value, or 0 for the node's default", req.MemoryBytes, req.CPUPercent, req.MaxProcs, req.DiskBytes)
	}
	lim := Limits{
		MemoryBytes: cmpOr(req.MemoryBytes, m.opts.Default.MemoryBytes),
		CPUPercent:  cmpOr(req.CPUPercent, m.opts.Default.CPUPercent),
		MaxProcs:    cmpOr(req.MaxProcs, m.opts.Default.MaxProcs),
		DiskBytes:   cmpOr(req.DiskBytes, m.opts.Default.DiskBytes),
	}
	switch {
	case lim.MemoryBytes > m.opts.Max.MemoryBytes:
		return lim, fmt.Errorf("%w: memory %s is above this node's ceiling %s (jobs.memoryMax in joblet-config.yml)", ErrLimit, config.SizeText(lim.MemoryBytes), config.SizeText(m.opts.Max.MemoryBytes))
	case lim.CPUPercent > m.opts.Max.CPUPercent:
		return lim, fmt.Errorf("%w: cpu %d%% is above this node's ceiling %d%% (jobs.cpuMax in joblet-config.yml)", ErrLimit, lim.CPUPercent, m.opts.Max.CPUPercent)
	case lim.MaxProcs > m.opts.Max.MaxProcs:
		return lim, fmt.Errorf("%w: %d processes is above this node's ceiling %d (jobs.procsMax in joblet-config.yml)", ErrLimit, lim.MaxProcs, m.opts.Max.MaxProcs)
	case lim.DiskBytes > m.opts.Max.DiskBytes:
		return lim, fmt.Errorf("%w: disk %s is above this node's ceiling %s (jobs.diskMax in joblet-config.yml)", ErrLimit, config.SizeText(lim.DiskBytes), config.SizeText(m.opts.Max.DiskBytes))
	}
	return lim, nil
}

// admit checks a request against the node's caps; m.mu is held.
func (m *Manager) admit(r Request) error {
	size := len(r.Command)
	for _, a := range r.Args {
		size += len(a)
	}
	for _, e := range r.Env {
		size += len(e)
	}
	if size > m.opts.MaxRequestBytes {
		return fmt.Errorf("%w: the request's command, arguments and environment are %d bytes, more than %d (jobs.maxRequestBytes in joblet-config.yml)", ErrLimit, size, m.opts.MaxRequestBytes)
	}
	if m.running >= m.opts.MaxRunning {
		return fmt.Errorf("%w: %d jobs are running, the most this node runs at once (jobs.maxRunning in joblet-config.yml)", ErrLimit, m.running)
	}
	return nil
}

// evict drops the oldest finished jobs beyond MaxKept, with their output
// and work dir; m.mu is held.
func (m *Manager) evict() {
	var done []*job
	for _, j := range m.jobs {
		if j.finished() {
			done = append(done, j)
		}
	}
	for len(done) > m.opts.MaxKept {
		oldest := 0
		for i, j := range done {
			if j.started.Before(done[oldest].started) {
				oldest = i
			}
		}
		j := done[oldest]
		delete(m.jobs, j.id)
		if j.dir != "" {
			if err := os.RemoveAll(j.dir); err != nil {
				m.opts.Log.Warn("jobs: remove an evicted job's work dir", "dir", j.dir, "err", err)
			}
		}
		done = append(done[:oldest], done[oldest+1:]...)
	}
}

// removeWorkDirs removes the work dirs of finished jobs.
func (m *Manager) removeWorkDirs() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, j := range m.jobs {
		if j.dir != "" && j.finished() {
			_ = os.RemoveAll(j.dir)
		}
	}
}
