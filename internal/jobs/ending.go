package jobs

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/containment"
)

// ending is a job's final status and the reason shown with it.
func ending(e containment.Exit, stopped bool, lim Limits) (status, reason string) {
	switch {
	case stopped:
		return Stopped, "stopped"
	case e.OOMKilled:
		// Checked before the exit code: the job's first process may survive
		// the OOM kill of a child and exit non-zero on its own.
		return Failed, fmt.Sprintf("killed at its memory limit (%s)", config.SizeText(lim.MemoryBytes))
	case e.Signal != 0:
		return Failed, "killed by " + unix.SignalName(e.Signal)
	case e.Code == 0:
		return Completed, "exit code 0"
	}
	return Failed, fmt.Sprintf("exit code %d", e.Code)
}

func (j *job) finished() bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.status != Running
}
