//go:build bench

package bench

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/jobs"
	_ "github.com/ehsaniara/joblet/internal/sandbox" // the mechanism full isolation runs in
)

const jobStarts = 50

// jobStart is one `echo x`: from Run to its first output byte, and to the
// end of its log (the job reaped and its cgroup removed).
func jobStart(t *testing.T, m *jobs.Manager) (first, done time.Duration) {
	t0 := time.Now()
	s, err := m.Run("echo", []string{"x"}, "bench")
	if err != nil {
		t.Fatal(err)
	}
	err = m.Logs(context.Background(), s.ID, true, func(jobs.Chunk) error {
		if first == 0 {
			first = time.Since(t0)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return first, time.Since(t0)
}

// jobStartSection compares job start latency with and without isolation.
func jobStartSection(t *testing.T, md *strings.Builder) {
	managers := map[string]*jobs.Manager{}
	for _, iso := range []string{jobs.IsolationFull, jobs.IsolationNone} {
		m, err := jobs.New(jobs.Options{Isolation: iso, JobsDir: filepath.Join(t.TempDir(), "jobs"), MaxKept: 8})
		if err != nil {
			t.Fatal(err)
		}
		if iso == jobs.IsolationFull && strings.HasPrefix(m.Isolation(), "unavailable") {
			t.Fatalf("this node cannot contain jobs: %s", m.Isolation())
		}
		managers[iso] = m
	}
	first := map[string][]time.Duration{}
	done := map[string][]time.Duration{}
	// Interleaved, so drift on a shared machine hits both alike.
	for i := 0; i < jobStarts; i++ {
		for _, iso := range []string{jobs.IsolationFull, jobs.IsolationNone} {
			f, d := jobStart(t, managers[iso])
			first[iso], done[iso] = append(first[iso], f), append(done[iso], d)
		}
	}
	fmt.Fprintf(md, "## Job start\n\n%d starts of `echo x` each through the job runner (in process, no gRPC), full isolation (user, pid/mnt/uts/ipc/net namespaces, masked paths, read-only root, cgroups, a tmpfs for the job's files, Docker's seccomp profile, an empty capability bounding set) and none interleaved. First byte: from Run to the command's first output byte; done: to the end of its log (reaped, cgroup removed). Goal: isolation adds at most 20 ms at the median.\n\n", jobStarts)
	fmt.Fprintf(md, "| isolation | first byte median | p90 | done median | p90 |\n|---|---|---|---|---|\n")
	for _, iso := range []string{jobs.IsolationFull, jobs.IsolationNone} {
		fmt.Fprintf(md, "| %s | %s | %s | %s | %s |\n", iso, ms(pct(first[iso], .5)), ms(pct(first[iso], .9)), ms(pct(done[iso], .5)), ms(pct(done[iso], .9)))
	}
	added := pct(first[jobs.IsolationFull], .5) - pct(first[jobs.IsolationNone], .5)
	fmt.Fprintf(md, "\nIsolation adds %s at the median to the first byte (goal ≤ 20 ms).\n\n", ms(added))
}
