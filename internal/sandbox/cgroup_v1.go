package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// v1 is a job's group in each v1 controller it needs (a directory may
// serve several when they are co-mounted, e.g. cpu,cpuacct).
type v1 struct {
	dirs map[string]string // controller -> the job's group
}

func newV1(l layout, id string, lim Limits, total int64) (cgroup, error) {
	g := &v1{dirs: map[string]string{}}
	for _, c := range v1Controllers {
		h, ok := l.v1[c]
		if !ok {
			return nil, fmt.Errorf("cgroup v1 controller %q is not mounted: mount it under /sys/fs/cgroup or set jobs.isolation: none", c)
		}
		dir := h.jobDir(id)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			_ = g.remove()
			return nil, fmt.Errorf("cgroup: create %s: %w", dir, err)
		}
		g.dirs[c] = dir
	}
	if total > 0 {
		// The parent's limit covers its children: v1 memory is
		// hierarchical (memory.use_hierarchy, 1 by default and always
		// on since Linux 5.x).
		if err := writeFile(filepath.Join(filepath.Dir(g.dirs["memory"]), "memory.limit_in_bytes"), strconv.FormatInt(total, 10)); err != nil {
			_ = g.remove()
			if errors.Is(err, syscall.EBUSY) {
				return nil, fmt.Errorf("%w: the jobs use more memory than jobs.memoryTotal now; raise it, or wait for jobs to end", err)
			}
			return nil, err
		}
	}
	if err := g.limit(lim); err != nil {
		_ = g.remove()
		return nil, err
	}
	return g, nil
}

func (g *v1) limit(lim Limits) error {
	mem := g.dirs["memory"]
	if lim.MemoryBytes > 0 {
		v := strconv.FormatInt(lim.MemoryBytes, 10)
		if err := writeFile(filepath.Join(mem, "memory.limit_in_bytes"), v); err != nil {
			return err
		}
		// Memory+swap at the same value: the job cannot swap past its limit.
		// Absent when the kernel runs without swap accounting.
		if _, err := os.Stat(filepath.Join(mem, "memory.memsw.limit_in_bytes")); err == nil {
			if err := writeFile(filepath.Join(mem, "memory.memsw.limit_in_bytes"), v); err != nil {
				return err
			}
		}
	}
	if lim.CPUPercent > 0 {
		cpu := g.dirs["cpu"]
		if err := writeFile(filepath.Join(cpu, "cpu.cfs_period_us"), "100000"); err != nil {
			return err
		}
		if err := writeFile(filepath.Join(cpu, "cpu.cfs_quota_us"), strconv.Itoa(lim.CPUPercent*1000)); err != nil {
			return err
		}
	}
	if lim.MaxProcs > 0 {
		if err := writeFile(filepath.Join(g.dirs["pids"], "pids.max"), strconv.Itoa(lim.MaxProcs)); err != nil {
			return err
		}
	}
	return nil
}

func (g *v1) add(pid int) error {
	done := map[string]bool{}
	for _, c := range v1Controllers {
		if dir := g.dirs[c]; !done[dir] {
			done[dir] = true
			if err := writeFile(filepath.Join(dir, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
				return err
			}
		}
	}
	return nil
}

func (g *v1) limitPids(n int) error {
	return writeFile(filepath.Join(g.dirs["pids"], "pids.max"), strconv.Itoa(n))
}

func (g *v1) pids() []int { return readPids(filepath.Join(g.dirs["pids"], "cgroup.procs")) }

// kill freezes the group so nothing can fork while it is being killed,
// SIGKILLs every process in it, then thaws it so the kills are delivered.
func (g *v1) kill() error {
	state := filepath.Join(g.dirs["freezer"], "freezer.state")
	if err := writeFile(state, "FROZEN"); err != nil {
		return err
	}
	// FREEZING until every task has stopped; bounded, and killing a
	// partially frozen group still works (the pid namespace does the rest).
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if b, _ := os.ReadFile(state); strings.TrimSpace(string(b)) == "FROZEN" {
			break
		}
	}
	for _, pid := range readPids(filepath.Join(g.dirs["freezer"], "cgroup.procs")) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return writeFile(state, "THAWED")
}

// oomKilled: oom_kill counts kills by the memory controller's OOM killer
// (Linux ≥ 4.13); under_oom catches a group still stuck at its limit.
func (g *v1) oomKilled() bool {
	f := filepath.Join(g.dirs["memory"], "memory.oom_control")
	return keyed(f, "oom_kill") > 0 || keyed(f, "under_oom") > 0
}

func (g *v1) cpuUsage() time.Duration {
	b, err := os.ReadFile(filepath.Join(g.dirs["cpuacct"], "cpuacct.usage"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return time.Duration(n)
}

func (g *v1) remove() error {
	var first error
	done := map[string]bool{}
	for _, dir := range g.dirs {
		if !done[dir] {
			done[dir] = true
			if err := removeDir(dir); err != nil && first == nil {
				first = err
			}
		}
	}
	return first
}
