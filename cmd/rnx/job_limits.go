package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
)

// runOptions are job run's flags that go into the request: the job's
// environment and its limits (0: the node's default).
type runOptions struct {
	env       []string
	maxMemory string
	maxCPU    int
	maxProcs  int
	maxDisk   string
}

func (o *runOptions) flags(c *cobra.Command) {
	// StringArray, not StringSlice: a value may hold commas.
	c.Flags().StringArrayVarP(&o.env, "env", "e", nil, "set KEY=VALUE in the job's environment (repeatable); the job gets nothing else but PATH, HOME and LANG, which KEY may replace")
	c.Flags().StringVar(&o.maxMemory, "max-memory", "", "the job's memory limit, e.g. 512M or 2G (default and ceiling: the node's jobs.memoryDefault / memoryMax)")
	c.Flags().IntVar(&o.maxCPU, "max-cpu", 0, "the job's CPU limit in percent of one core, e.g. 50 or 200 (default and ceiling: jobs.cpuDefault / cpuMax)")
	c.Flags().IntVar(&o.maxProcs, "max-procs", 0, "the most processes and threads the job may have (default and ceiling: jobs.procsDefault / procsMax)")
	c.Flags().StringVar(&o.maxDisk, "max-disk", "", "the job's files (work dir, /tmp), e.g. 256M or 1G: writing past it fails with ENOSPC (default and ceiling: jobs.diskDefault / diskMax)")
}

// request checks the flags before anything reaches the node, so a typo is a
// usage error, not a job refused or run with the defaults.
func (o *runOptions) request(cmd *cobra.Command, args []string) (*pb.RunJobRequest, error) {
	r := &pb.RunJobRequest{Command: args[0], Args: args[1:], Env: o.env}
	for _, kv := range o.env {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return nil, usagef(cmd, "--env %q: give KEY=VALUE", kv)
		}
	}
	// The node's own rule, checked here: a bad name is a usage error,
	// not a request the node refuses.
	if err := config.CheckJobEnv(o.env); err != nil {
		return nil, usagef(cmd, "--env: %v", err)
	}
	mem, err := config.ParseBytes(o.maxMemory)
	if err != nil {
		return nil, usagef(cmd, "--max-memory: %v", err)
	}
	disk, err := config.ParseBytes(o.maxDisk)
	if err != nil {
		return nil, usagef(cmd, "--max-disk: %v", err)
	}
	if o.maxCPU < 0 || o.maxProcs < 0 || o.maxCPU > 1<<20 || o.maxProcs > 1<<30 {
		return nil, usagef(cmd, "--max-cpu and --max-procs take a positive number")
	}
	r.MaxMemoryBytes, r.MaxCpuPercent, r.MaxProcs, r.MaxDiskBytes = mem, int32(o.maxCPU), int32(o.maxProcs), disk
	return r, nil
}

// limitsText is a job's limits in force, "" from a node that predates them.
func limitsText(j *pb.Job) string {
	if j.MaxMemoryBytes == 0 && j.MaxCpuPercent == 0 && j.MaxProcs == 0 {
		return ""
	}
	s := fmt.Sprintf("memory %s, cpu %d%%, procs %d", config.SizeText(j.MaxMemoryBytes), j.MaxCpuPercent, j.MaxProcs)
	if j.MaxDiskBytes > 0 { // absent from a node that predates the disk limit
		s += ", disk " + config.SizeText(j.MaxDiskBytes)
	}
	return s
}
