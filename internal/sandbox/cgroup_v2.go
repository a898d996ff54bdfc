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

// v2 is a job's group in the unified hierarchy (pure v2 machines).
type v2 struct{ dir string }

// checkV2 names a controller the server's group cannot hand down (on
// systemd: the unit needs Delegate=yes).
func checkV2(l layout) error {
	base := filepath.Join(l.v2.mount, l.v2.self)
	b, err := os.ReadFile(filepath.Join(base, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("cgroup v2: read %s/cgroup.controllers: %w", base, err)
	}
	have := strings.Fields(string(b))
	for _, c := range v2Controllers {
		if !contains(have, c) {
			return fmt.Errorf("cgroup v2 controller %q is not available in the server's cgroup %s: run joblet with the controller delegated (systemd unit: Delegate=yes) or set jobs.isolation: none", c, base)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "cgroup.kill")); err != nil {
		return fmt.Errorf("cgroup v2 has no cgroup.kill (needs Linux ≥ 5.14): upgrade the kernel or set jobs.isolation: none")
	}
	return nil
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// enableV2 makes the controllers available to groups below base/groupBase.
// v2 forbids processes in a group that hands controllers down, so when the
// server's own group holds processes (the server itself), they move to a
// leaf next to the jobs' groups first, as container runtimes do.
func enableV2(base string) error {
	ctl := "+" + strings.Join(v2Controllers, " +")
	err := os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte(ctl), 0)
	if errors.Is(err, syscall.EBUSY) {
		leaf := filepath.Join(base, "joblet-server")
		if err := os.MkdirAll(leaf, 0o755); err != nil {
			return fmt.Errorf("cgroup v2: create %s: %w", leaf, err)
		}
		for _, pid := range readPids(filepath.Join(base, "cgroup.procs")) {
			if err := writeFile(filepath.Join(leaf, "cgroup.procs"), strconv.Itoa(pid)); err != nil {
				return err
			}
		}
		err = os.WriteFile(filepath.Join(base, "cgroup.subtree_control"), []byte(ctl), 0)
	}
	if err != nil {
		return fmt.Errorf("cgroup v2: enable %s in %s: %w", ctl, base, err)
	}
	jobs := filepath.Join(base, groupBase)
	if err := os.MkdirAll(jobs, 0o755); err != nil {
		return fmt.Errorf("cgroup v2: create %s: %w", jobs, err)
	}
	return writeFile(filepath.Join(jobs, "cgroup.subtree_control"), ctl)
}

func newV2(l layout, id string, lim Limits, total int64) (cgroup, error) {
	if err := checkV2(l); err != nil {
		return nil, err
	}
	if err := enableV2(filepath.Join(l.v2.mount, l.v2.self)); err != nil {
		return nil, err
	}
	if total > 0 {
		if err := writeFile(filepath.Join(l.v2.mount, l.v2.self, groupBase, "memory.max"), strconv.FormatInt(total, 10)); err != nil {
			return nil, err
		}
	}
	g := &v2{dir: l.v2.jobDir(id)}
	if err := os.Mkdir(g.dir, 0o755); err != nil {
		return nil, fmt.Errorf("cgroup: create %s: %w", g.dir, err)
	}
	if err := g.limit(lim); err != nil {
		_ = g.remove()
		return nil, err
	}
	return g, nil
}

func (g *v2) limit(lim Limits) error {
	if lim.MemoryBytes > 0 {
		if err := writeFile(filepath.Join(g.dir, "memory.max"), strconv.FormatInt(lim.MemoryBytes, 10)); err != nil {
			return err
		}
		if _, err := os.Stat(filepath.Join(g.dir, "memory.swap.max")); err == nil {
			if err := writeFile(filepath.Join(g.dir, "memory.swap.max"), "0"); err != nil {
				return err
			}
		}
	}
	if lim.CPUPercent > 0 {
		if err := writeFile(filepath.Join(g.dir, "cpu.max"), strconv.Itoa(lim.CPUPercent*1000)+" 100000"); err != nil {
			return err
		}
	}
	if lim.MaxProcs > 0 {
		if err := writeFile(filepath.Join(g.dir, "pids.max"), strconv.Itoa(lim.MaxProcs)); err != nil {
			return err
		}
	}
	return nil
}

func (g *v2) add(pid int) error {
	return writeFile(filepath.Join(g.dir, "cgroup.procs"), strconv.Itoa(pid))
}

func (g *v2) limitPids(n int) error {
	return writeFile(filepath.Join(g.dir, "pids.max"), strconv.Itoa(n))
}

func (g *v2) pids() []int { return readPids(filepath.Join(g.dir, "cgroup.procs")) }

// kill: cgroup.kill SIGKILLs every process of the group, forks included.
func (g *v2) kill() error { return writeFile(filepath.Join(g.dir, "cgroup.kill"), "1") }

func (g *v2) oomKilled() bool { return keyed(filepath.Join(g.dir, "memory.events"), "oom_kill") > 0 }

func (g *v2) cpuUsage() time.Duration {
	return time.Duration(keyed(filepath.Join(g.dir, "cpu.stat"), "usage_usec")) * time.Microsecond
}

func (g *v2) remove() error { return removeDir(g.dir) }
