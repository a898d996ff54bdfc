package server

import (
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/jobs"
	"github.com/ehsaniara/joblet/internal/pki"
)

// access is what a role may do with one job, on top of the per-RPC table
// in authz.go (which already keeps readers from RunJob, StopJob and
// GetJobLogs).
//
// A job's owner is the role that started it, not the person. Shared role
// certificates name no person (every holder of rnx-config-developer.yml is
// "developer"), and a person's certificate (`rnx login`) is the same role
// to these rules: a developer's "own jobs" are the jobs any developer
// started, shared certificate or person. Per person would lock automation
// on the shared certificate out of what people started and the reverse,
// and one developer out of stopping another's job; the person is recorded
// on the job (StartedByPerson) and in the audit line for who did what,
// not for who may. Arguments and output are where a job's secrets show (a
// token on the command line, a config it prints), so only the owning role
// and the node's operators see them:
//
//   - admin, maintainer: everything, for every job (they operate the node:
//     they must be able to see and stop whatever runs on it);
//   - developer: arguments, output and stop of jobs started by developer;
//     of others' jobs the status only (id, command, state, reason, limits);
//   - reader: the status of every job, no arguments, no output.
type access struct {
	args, output, stop bool
}

func jobAccess(role pki.Role, startedBy string) access {
	switch role {
	case pki.Admin, pki.Maintainer:
		return access{args: true, output: true, stop: true}
	case pki.Developer:
		own := startedBy == string(pki.Developer) // the role, whoever the person (above)
		return access{args: own, output: own, stop: own}
	}
	return access{}
}

// view is the job as role may see it.
func view(role pki.Role, s jobs.Snapshot) *pb.Job {
	j := toPB(s)
	if !jobAccess(role, s.StartedBy).args {
		j.Args, j.ArgsHidden = nil, true
	}
	return j
}

// denied is the refusal of one operation on one job, with the rule.
func denied(role pki.Role, s jobs.Snapshot, what string) error {
	by := fmt.Sprintf("%q", s.StartedBy)
	if s.StartedByPerson != "" {
		by += " (" + s.StartedByPerson + ")"
	}
	return status.Error(codes.PermissionDenied, fmt.Sprintf(
		"role %q may not %s job %s: it was started by %s, and a %s may %s only jobs its own role started (roles table: docs/JOBS.md)",
		role, what, s.ID, by, role, what))
}
