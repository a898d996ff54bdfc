// Package containment is the contract between the job runner (internal/jobs)
// and the mechanism that contains a job (internal/sandbox): what to run and
// how (Spec, Limits), how it ended (Exit), and the Runtime that does it.
//
// The mechanism registers its Runtime when a binary links it (the joblet
// binary and the tests that run jobs import internal/sandbox, which they
// must anyway: its init is the sandbox's re-exec hook). So what serves the
// jobs API (internal/server) links this contract and not the mechanism
// (test/layers_test.go).
package containment

import (
	"io"
	"syscall"
	"time"
)

// Isolation modes.
const (
	// Full is every containment the mechanism offers; the default.
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
	// JobsMemory limits the memory of all jobs together (their parent
	// cgroup), so that jobs filling their tmpfs cannot take the node's
	// RAM from the server; 0 leaves the parent's limit as it is.
	JobsMemory int64
}

// Exit is how a process ended.
type Exit struct {
	Code      int            // exit status; -1 when killed by a signal
	Signal    syscall.Signal // the signal that killed it; 0 when it exited
	OOMKilled bool           // the kernel killed a process of the job at its memory limit
	CPU       time.Duration
}

// Process is a started job.
type Process interface {
	// Wait waits for the job to end, with everything it started, and
	// says how; one goroutine calls it.
	Wait() Exit
	// Signal sends sig to the job's command.
	Signal(sig syscall.Signal)
	// Kill kills everything the job started and returns once it has ended.
	Kill() error
}

// Runtime contains jobs on this node.
type Runtime interface {
	// JobUser resolves the job user (the default one is created when
	// missing; note says what was done, for the log).
	JobUser(name string) (uid, gid int, note string, err error)
	// GuardHostNetwork keeps uid away from the cloud metadata endpoints
	// (jobs sharing the node's network), or says why it cannot.
	GuardHostNetwork(uid int) error
	// MakeWorkDir creates root/id for the job user.
	MakeWorkDir(root, id string, uid, gid int) (string, error)
	// Probe runs `true` as spec asks: the proof the node can.
	Probe(spec Spec) error
	// Start starts spec's command writing to stdout and stderr.
	Start(spec Spec, stdout, stderr io.Writer) (Process, error)
	// RemoveGroups removes the cgroups of jobs a killed server left, and
	// returns the groups it removed.
	RemoveGroups(ids []string) ([]string, error)
}

var registered Runtime

// Register makes r the Runtime of this binary; the mechanism calls it from
// its init, before main.
func Register(r Runtime) { registered = r }

// Registered is the Runtime this binary links, nil when it links none.
func Registered() Runtime { return registered }
