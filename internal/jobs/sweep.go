package jobs

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
)

// A Manager keeps its jobs' work dirs in a directory of its own below
// JobsDir, run-<random>, and holds an exclusive flock on run-<random>.lock
// beside it for as long as its process lives. The kernel drops the lock
// when the process dies, however it dies (SIGKILL, OOM kill), so a Manager
// starting later tells what a dead server left from what a live one (a
// second server, a test) is using: a lock it can take. It removes that
// run's work dirs and the cgroups of its jobs, and says so in the log.

const runPrefix = "run-"

// claimRun sweeps JobsDir, then creates and locks this Manager's run dir.
func (m *Manager) claimRun() error {
	if err := os.MkdirAll(m.opts.JobsDir, 0o700); err != nil {
		return fmt.Errorf("jobs dir %s: %w", m.opts.JobsDir, err)
	}
	m.sweep()
	b := make([]byte, 6)
	if _, err := rand.Read(b); err != nil {
		return fmt.Errorf("jobs: run id: %w", err)
	}
	run := filepath.Join(m.opts.JobsDir, runPrefix+hex.EncodeToString(b))
	// Locked before it has its name, so no sweep ever takes a fresh lock
	// for a dead server's.
	lock, err := lockFile(run+".lock.new", true)
	if err == nil {
		err = os.Rename(run+".lock.new", run+".lock")
	}
	if err != nil {
		return fmt.Errorf("jobs: lock a run dir in %s: %w", m.opts.JobsDir, err)
	}
	if err := os.Mkdir(run, 0o700); err != nil {
		lock.Close()
		return fmt.Errorf("jobs: run dir: %w", err)
	}
	m.runDir, m.runLock = run, lock
	return nil
}

// lockFile opens path and takes an exclusive flock on it, without waiting.
func lockFile(path string, create bool) (*os.File, error) {
	flags := os.O_RDWR
	if create {
		flags |= os.O_CREATE | os.O_EXCL
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// sweep removes the runs no live process holds, and work dirs from before
// runs existed (JobsDir/<job id>), with their jobs' cgroups.
func (m *Manager) sweep() {
	entries, err := os.ReadDir(m.opts.JobsDir)
	if err != nil {
		m.opts.Log.Warn("jobs: cannot sweep the jobs dir", "dir", m.opts.JobsDir, "err", err)
		return
	}
	have := map[string]bool{}
	for _, e := range entries {
		have[e.Name()] = true
	}
	for _, e := range entries {
		name := e.Name()
		path := filepath.Join(m.opts.JobsDir, name)
		// Only names joblet makes: jobs.dir may be set to a directory that
		// holds something else too, which is never touched.
		base, _ := strings.CutSuffix(name, ".new")
		base, locked := strings.CutSuffix(base, ".lock")
		switch {
		case !runName.MatchString(base) && !(legacyName.MatchString(name) && e.IsDir()):
			// not joblet's
		case strings.HasSuffix(name, ".lock.new"):
			if lock, err := lockFile(path, false); err == nil {
				os.Remove(path) // a server killed between creating and naming its lock
				lock.Close()
			}
		case locked:
			lock, err := lockFile(path, false)
			if err != nil {
				continue // a live server's run (or gone meanwhile)
			}
			if have[base] {
				m.removeLeft(filepath.Join(m.opts.JobsDir, base), true)
			}
			// The lock goes last: a run dir is never without its lock
			// while a sweep may still count on it.
			os.Remove(path)
			lock.Close()
		case !e.IsDir() || have[name+".lock"]:
			// a run with its lock: handled (or in use) above
		default:
			// A run dir whose lock is gone was being removed by a sweep
			// that ended midway; a job id is a job's work dir from a
			// server before runs existed.
			m.removeLeft(path, runName.MatchString(name))
		}
	}
}

// The names sweep removes: runs, and the work dirs of jobs (12 hex digits)
// and of the start-up probe from before runs existed.
var (
	runName    = regexp.MustCompile(`^` + runPrefix + `[0-9a-f]{12}$`)
	legacyName = regexp.MustCompile(`^([0-9a-f]{12}|probe-[0-9]+)$`)
)

// removeLeft removes a dead server's run (jobs: its entries are job work
// dirs) or one work dir, with the cgroups of those jobs, and logs it.
func (m *Manager) removeLeft(path string, run bool) {
	ids := []string{filepath.Base(path)}
	if run {
		ids = nil
		entries, _ := os.ReadDir(path)
		for _, e := range entries {
			ids = append(ids, e.Name())
		}
	}
	var groups []string
	var gerr error
	if m.opts.Isolation != IsolationNone && len(ids) > 0 {
		groups, gerr = m.rt.RemoveGroups(ids)
	}
	err := errors.Join(gerr, os.RemoveAll(path))
	m.opts.Log.Warn("jobs: removed what a server that ended without cleaning up left behind (killed, or the machine went down)",
		"workDirs", path, "jobs", len(ids), "cgroups", groups, "err", err)
}

// releaseRun removes this Manager's run dir and lock (a clean shutdown),
// unless a job outlived Shutdown: the next server sweeps it then.
func (m *Manager) releaseRun() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.runLock == nil || m.running > 0 {
		return
	}
	_ = os.RemoveAll(m.runDir)
	_ = os.Remove(m.runDir + ".lock") // its name since the rename (runLock.Name() is still .lock.new)
	m.runLock.Close()
	m.runLock = nil
}
