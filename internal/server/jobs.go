package server

import (
	"cmp"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/jobs"
)

// newJobs builds the job runner from the config's jobs section. Jobs never
// see the node's secrets: the config dir, $JOBLET_HOME (derived from the
// config's path in the HOME/config/joblet-config.yml layout, else the
// environment's) and a dir store are masked in every job.
func newJobs(cfg *config.Server, configPath string, log *slog.Logger) (*jobs.Manager, error) {
	j := cfg.Jobs
	grace, err := cfg.GracePeriod()
	if err != nil {
		return nil, err
	}
	memDef, memMax, err := j.Memory()
	if err != nil {
		return nil, err
	}
	memTotal, err := config.ParseBytes(j.MemoryTotal)
	if err != nil {
		return nil, fmt.Errorf("jobs.memoryTotal: %w", err)
	}
	diskDef, diskMax, err := j.Disk()
	if err != nil {
		return nil, err
	}
	home := config.Home()
	var hide []string
	if configPath != "" {
		dir, _ := filepath.Abs(filepath.Dir(configPath))
		hide = append(hide, dir)
		if filepath.Base(dir) == "config" {
			home = filepath.Dir(dir)
		}
	}
	hide = append(hide, home, config.Home())
	if cfg.Store.Dir != "" {
		hide = append(hide, cfg.Store.Dir)
	}
	slices.Sort(hide)
	hide = slices.Compact(hide)
	m, err := jobs.New(jobs.Options{
		Isolation: j.Isolation, User: j.User, Network: j.Network,
		JobsDir: cmp.Or(j.Dir, filepath.Join(home, "jobs")), Hide: hide,
		Default:    jobs.Limits{MemoryBytes: memDef, CPUPercent: j.CPUDefault, MaxProcs: j.ProcsDefault, DiskBytes: diskDef},
		Max:        jobs.Limits{MemoryBytes: memMax, CPUPercent: j.CPUMax, MaxProcs: j.ProcsMax, DiskBytes: diskMax},
		MaxRunning: j.MaxRunning, MemoryTotal: memTotal, MaxKept: j.MaxKept, MaxRequestBytes: j.MaxRequestBytes,
		OutputBytes: cmp.Or(j.LogBufferBytes, config.DefaultLogBufferBytes), Grace: grace, Log: log,
		Node: cfg.Server.NodeID,
	})
	if err != nil {
		return nil, err
	}
	if j.Isolation == jobs.IsolationNone {
		log.Warn("JOBS ARE NOT CONTAINED: jobs.isolation is none, so every job runs as the server's user and can read its keys; use it only on a laptop demo",
			"isolation", m.Isolation())
	} else {
		log.Info("jobs contained", "isolation", m.Isolation(), "hidden", hide, "euid", os.Geteuid())
	}
	return m, nil
}
