package sandbox

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// A job's cgroup(s). Written against the files directly rather than with
// github.com/containerd/cgroups/v3: that library's v1 side creates groups in
// every mounted controller (cpuset, blkio, devices, ...) and its v2 side
// assumes the unified hierarchy at /sys/fs/cgroup, which misses the hybrid
// layout (v1 controllers, v2 at /sys/fs/cgroup/unified) this project's
// machines run; and it would pull cilium/ebpf, godbus and go-systemd into
// the server. Four controllers and a handful of files are less code than
// adapting it.
type cgroup interface {
	add(pid int) error
	limitPids(n int) error
	pids() []int
	kill() error // every process in the group, bounded in time
	oomKilled() bool
	cpuUsage() time.Duration
	remove() error
}

// groupBase is the directory, below the server's own cgroup, that holds
// one group per job. A variable so that a test can give its jobs a parent
// of their own (other test processes may share its cgroup).
var groupBase = "joblet-jobs"

// hierarchy is one mounted cgroup hierarchy: where it is mounted and the
// server's own group in it (from /proc/self/cgroup).
type hierarchy struct {
	mount, self string
}

// jobDir is the job's group in h.
func (h hierarchy) jobDir(id string) string {
	return filepath.Join(h.mount, h.self, groupBase, id)
}

// layout is what this machine mounts: v1 controllers by name, and the v2
// hierarchy (pure at /sys/fs/cgroup, or the hybrid's /sys/fs/cgroup/unified).
type layout struct {
	v1   map[string]hierarchy // "memory", "cpu", "cpuacct", "pids", "freezer"
	v2   *hierarchy
	pure bool // v2 only: limits come from the unified hierarchy
}

// readLayout parses /proc/self/mountinfo and /proc/self/cgroup.
func readLayout() (layout, error) {
	l := layout{v1: map[string]hierarchy{}}
	self := map[string]string{} // controller (or "" for v2) -> own path
	cg, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return l, fmt.Errorf("read /proc/self/cgroup: %w", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(cg)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			self[c] = parts[2]
		}
	}
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return l, fmt.Errorf("read /proc/self/mountinfo: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// id parent major:minor root mountpoint opts [optional...] - fstype source superopts
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		if !ok {
			continue
		}
		pf, qf := strings.Fields(pre), strings.Fields(post)
		if len(pf) < 5 || len(qf) < 3 {
			continue
		}
		mount := pf[4]
		switch qf[0] {
		case "cgroup2":
			l.v2 = &hierarchy{mount: mount, self: self[""]}
			l.pure = mount == "/sys/fs/cgroup"
		case "cgroup":
			for _, opt := range strings.Split(qf[2], ",") {
				if _, ok := self[opt]; ok {
					l.v1[opt] = hierarchy{mount: mount, self: self[opt]}
				}
			}
		}
	}
	return l, sc.Err()
}

// v1Controllers are what a job's limits and Kill need on a v1 machine.
var v1Controllers = []string{"memory", "cpu", "cpuacct", "pids", "freezer"}

// v2Controllers must be enabled for a job's group on a pure v2 machine.
var v2Controllers = []string{"memory", "cpu", "pids"}

// checkCgroups names what this machine lacks for contained jobs.
func checkCgroups() error {
	l, err := readLayout()
	if err != nil {
		return err
	}
	if l.pure {
		if err := checkV2(l); err != nil {
			return err
		}
		return nil
	}
	var missing []string
	for _, c := range v1Controllers {
		if _, ok := l.v1[c]; !ok {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("cgroup v1 controllers %s are not mounted (and /sys/fs/cgroup is not a cgroup v2 hierarchy): mount them under /sys/fs/cgroup, boot with cgroup v2 (systemd.unified_cgroup_hierarchy=1), or set jobs.isolation: none", strings.Join(missing, ","))
	}
	return nil
}

// newCgroup creates the job's group(s) and applies lim; total, when set,
// is the memory limit of the jobs' parent group (groupBase): each job is
// bounded, but maxRunning of them are not, and the server must outlive them.
func newCgroup(id string, lim Limits, total int64) (cgroup, error) {
	l, err := readLayout()
	if err != nil {
		return nil, err
	}
	if l.pure {
		return newV2(l, id, lim, total)
	}
	return newV1(l, id, lim, total)
}

func writeFile(path, v string) error {
	if err := os.WriteFile(path, []byte(v), 0); err != nil {
		return fmt.Errorf("cgroup: write %q to %s: %w", v, path, err)
	}
	return nil
}

func readPids(path string) []int {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var out []int
	for _, f := range strings.Fields(string(b)) {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// removeDir rmdirs a job's group, retrying while its last processes are
// still being reaped.
func removeDir(dir string) error {
	var err error
	for i := 0; i < 100; i++ {
		err = os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("cgroup: remove %s: %w", dir, err)
}

// keyed reads "key value" lines (memory.events, cpu.stat, oom_control).
func keyed(path, key string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}

// RemoveGroups kills what is left in the groups of the jobs ids (a server
// that ended without cleaning up: SIGKILL, OOM kill, power loss) and
// removes the groups; it returns the groups it removed. Groups are looked
// for below this process's own cgroup, where a server started the same way
// (the same systemd unit) created them.
func RemoveGroups(ids []string) (removed []string, err error) {
	l, err := readLayout()
	if err != nil {
		return nil, err
	}
	var hs []hierarchy
	if l.pure {
		hs = append(hs, *l.v2)
	} else {
		for _, h := range l.v1 {
			hs = append(hs, h)
		}
	}
	seen := map[string]bool{}
	var errs []error
	for _, id := range ids {
		for _, h := range hs {
			dir := h.jobDir(id)
			if seen[dir] {
				continue // co-mounted controllers share a directory
			}
			seen[dir] = true
			if _, err := os.Stat(dir); err != nil {
				continue
			}
			// A job dies with its server (its init has a parent-death
			// signal), so this is normally empty: kill stragglers anyway.
			for _, pid := range readPids(filepath.Join(dir, "cgroup.procs")) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			if err := removeDir(dir); err != nil {
				errs = append(errs, err)
				continue
			}
			removed = append(removed, dir)
		}
	}
	return removed, errors.Join(errs...)
}
