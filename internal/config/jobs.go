package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Validate checks the jobs section; zero values mean the runner's defaults.
func (j Jobs) Validate() error {
	switch j.Isolation {
	case "", "full", "none":
	default:
		return fmt.Errorf("jobs.isolation %q: use full (the default) or none (no containment, for a laptop demo only)", j.Isolation)
	}
	switch j.Network {
	case "", "none", "host":
	default:
		return fmt.Errorf("jobs.network %q: use none (the default: loopback only) or host", j.Network)
	}
	if j.Dir != "" && !strings.HasPrefix(j.Dir, "/") {
		return fmt.Errorf("jobs.dir %q: use an absolute path", j.Dir)
	}
	if _, _, err := j.Memory(); err != nil {
		return err
	}
	if _, err := ParseBytes(j.MemoryTotal); err != nil {
		return fmt.Errorf("jobs.memoryTotal: %w", err)
	}
	if _, _, err := j.Disk(); err != nil {
		return err
	}
	for key, v := range map[string]int{"jobs.cpuDefault": j.CPUDefault, "jobs.cpuMax": j.CPUMax, "jobs.procsDefault": j.ProcsDefault,
		"jobs.procsMax": j.ProcsMax, "jobs.maxRunning": j.MaxRunning, "jobs.maxKept": j.MaxKept, "jobs.maxRequestBytes": j.MaxRequestBytes, "jobs.listPageMax": j.ListPageMax} {
		if v < 0 {
			return fmt.Errorf("%s %d must not be negative (0 or absent: the default)", key, v)
		}
	}
	// A job's record carries its command and arguments, and must fit one
	// gRPC reply (4 MiB) with room to spare.
	if j.MaxRequestBytes > MaxRequestBytesCeiling {
		return fmt.Errorf("jobs.maxRequestBytes %d is above %d: a job's record must fit one gRPC reply; pass large inputs as files, not arguments", j.MaxRequestBytes, MaxRequestBytesCeiling)
	}
	if j.CPUMax > 0 && j.CPUDefault > j.CPUMax {
		return fmt.Errorf("jobs.cpuDefault %d is above jobs.cpuMax %d", j.CPUDefault, j.CPUMax)
	}
	if j.ProcsMax > 0 && j.ProcsDefault > j.ProcsMax {
		return fmt.Errorf("jobs.procsDefault %d is above jobs.procsMax %d", j.ProcsDefault, j.ProcsMax)
	}
	return nil
}

// MaxRequestBytesCeiling is the most jobs.maxRequestBytes may be.
const MaxRequestBytesCeiling = 1 << 20

// Memory parses MemoryDefault and MemoryMax (0 when absent).
func (j Jobs) Memory() (def, max int64, err error) {
	return sizePair("jobs.memoryDefault", j.MemoryDefault, "jobs.memoryMax", j.MemoryMax)
}

// Disk parses DiskDefault and DiskMax (0 when absent).
func (j Jobs) Disk() (def, max int64, err error) {
	return sizePair("jobs.diskDefault", j.DiskDefault, "jobs.diskMax", j.DiskMax)
}

// sizePair parses a default and its ceiling, keyed for the messages.
func sizePair(defKey, defText, maxKey, maxText string) (def, max int64, err error) {
	if def, err = ParseBytes(defText); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", defKey, err)
	}
	if max, err = ParseBytes(maxText); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", maxKey, err)
	}
	if max > 0 && def > max {
		return 0, 0, fmt.Errorf("%s %s is above %s %s", defKey, defText, maxKey, maxText)
	}
	return def, max, nil
}

// ParseBytes reads a size such as 536870912, 512M, 512Mi or 2G (binary
// units: K, M, G, T, with or without "i"/"iB"/"B"); "" is 0.
func ParseBytes(s string) (int64, error) {
	if s == "" {
		return 0, nil
	}
	num := strings.TrimRight(s, "KMGTiBkmgtb")
	unit := strings.ToUpper(strings.TrimSuffix(strings.TrimSuffix(s[len(num):], "B"), "i"))
	shift := map[string]uint{"": 0, "K": 10, "M": 20, "G": 30, "T": 40}
	sh, ok := shift[unit]
	n, err := strconv.ParseInt(strings.TrimSpace(num), 10, 64)
	if !ok || err != nil || n <= 0 || n > (1<<62)>>sh {
		return 0, fmt.Errorf("%q is not a size: use bytes or a number with K, M, G or T (e.g. 512M)", s)
	}
	return n << sh, nil
}

// SizeText is n bytes in the largest binary unit that divides it exactly
// ("512 MiB", "1536 KiB", "1000 bytes"), as a person would set it: ParseBytes reads it back.
func SizeText(n int64) string {
	for _, u := range []struct {
		shift uint
		name  string
	}{{40, "TiB"}, {30, "GiB"}, {20, "MiB"}, {10, "KiB"}} {
		if n > 0 && n%(1<<u.shift) == 0 {
			return fmt.Sprintf("%d %s", n>>u.shift, u.name)
		}
	}
	return fmt.Sprintf("%d bytes", n)
}
