package jobs

import (
	"os"
	"time"

	// The mechanism these tests run jobs in (and its re-exec hook).
	_ "github.com/ehsaniara/joblet/internal/sandbox"
)

// NewManager is an UNCONFINED manager (isolation none, the server's user)
// keeping at most logBytes of output per job and giving a stopped job grace
// between SIGTERM and SIGKILL, with a jobs dir of its own: for tests only.
func NewManager(logBytes int, grace time.Duration) *Manager {
	dir, err := os.MkdirTemp("", "joblet-test-jobs-")
	if err != nil {
		panic(err)
	}
	m, err := New(Options{Isolation: IsolationNone, JobsDir: dir, OutputBytes: logBytes, Grace: grace})
	if err != nil {
		panic(err)
	}
	return m
}
