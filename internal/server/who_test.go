package server_test

import (
	"io"
	"log/slog"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// A node records who started each job (the person of an `rnx login`
// certificate, none for a shared role certificate, and the role) and names
// the person and role in the audit line of every call, refused ones too.
// The per-job rules still go by role: a person with the developer role
// sees the arguments of a job the shared developer certificate started,
// and is refused the admin's.
func TestNodeRecordsWhoStartedAJob(t *testing.T) {
	const alice, carol = "arn:aws:iam::111122223333:user/alice", "arn:aws:iam::111122223333:role/ops#carol"
	st := storetest.NewMemoryStore()
	startNode(t, st) // the fleet
	u := newUserCA(t, st)
	log := &syncBuf{}
	f := startNodeLog(t, st, slog.New(slog.NewTextHandler(log, nil)), u.policy(t, idpolicy.Policy{Rules: []idpolicy.Rule{
		{User: alice, Grant: pki.Developer},
		{Role: "arn:aws:iam::111122223333:role/ops", Grant: pki.Maintainer},
	}}))
	conns := map[string]struct {
		node          string
		person        string // "" for a shared role certificate
		role, logName string
	}{
		"alice":            {"", alice, "developer", alice},
		"carol":            {"", carol, "maintainer", carol},
		"shared admin":     {"default", "", "admin", "shared"},
		"shared developer": {"developer", "", "developer", "shared"},
	}
	jobs := map[string]*pb.Job{}
	for who, c := range conns {
		n := f.rnx.Nodes[c.node]
		if c.person != "" {
			n = u.person(t, f.rnx.Nodes["default"], c.person, pki.Role(c.role))
		}
		j, err := dial(t, who, n).Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "sh", Args: []string{"-c", "echo " + strings.ReplaceAll(who, " ", "-")}})
		if err != nil {
			t.Fatalf("%s: %v", who, err)
		}
		if j.StartedBy != c.role || j.StartedByPerson != c.person {
			t.Errorf("%s started a job recorded as %q/%q, want %q/%q", who, j.StartedBy, j.StartedByPerson, c.role, c.person)
		}
		jobs[who] = j
	}
	aliceConn := dial(t, "alice", u.person(t, f.rnx.Nodes["default"], alice, pki.Developer))
	list, err := aliceConn.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{})
	if err != nil || len(list.Jobs) != len(conns) {
		t.Fatalf("list: %v %v", list, err)
	}
	for who, j := range jobs {
		for _, l := range list.Jobs {
			if l.Id != j.Id {
				continue
			}
			if l.StartedByPerson != conns[who].person || l.StartedBy != conns[who].role {
				t.Errorf("the list shows %s's job as started by %q/%q", who, l.StartedBy, l.StartedByPerson)
			}
			// The rule is the role's: alice sees the arguments of every
			// developer's job, no one else's.
			if l.ArgsHidden != (conns[who].role != "developer") {
				t.Errorf("alice sees %s's job with argsHidden=%v", who, l.ArgsHidden)
			}
		}
	}
	// A streaming call (its line, when it ends, names the job its request
	// named): the output of a job that has ended.
	logs, err := aliceConn.Jobs.GetJobLogs(ctx(t), &pb.GetJobLogsRequest{Id: jobs["shared developer"].Id})
	if err != nil {
		t.Fatal(err)
	}
	for err == nil {
		_, err = logs.Recv()
	}
	if err != io.EOF {
		t.Fatalf("alice reading the shared developer's output: %v", err)
	}
	_, err = aliceConn.Jobs.StopJob(ctx(t), &pb.StopJobRequest{Id: jobs["shared admin"].Id})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice stopping the admin's job: %v", err)
	}

	// A person the policy does not name is refused, and on record.
	const mallory = "arn:aws:iam::111122223333:user/mallory"
	if _, err := dial(t, "mallory", u.person(t, f.rnx.Nodes["default"], mallory, pki.Admin)).Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("mallory listing: %v", err)
	}

	lines := strings.Split(log.String(), "\n")
	has := func(parts ...string) bool {
		for _, l := range lines {
			ok := strings.Contains(l, "msg=call ")
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				return true
			}
		}
		return false
	}
	for who, c := range conns {
		if !has("method=RunJob", "person="+c.logName, "role="+c.role, "code=OK", "job="+jobs[who].Id) {
			t.Errorf("no audit line names %s (person=%s role=%s) starting %s:\n%s", who, c.logName, c.role, jobs[who].Id, log)
		}
	}
	if !has("method=GetJobLogs", "person="+alice, "role=developer", "code=OK", "job="+jobs["shared developer"].Id) {
		t.Errorf("no audit line of alice reading the shared developer's output:\n%s", log)
	}
	if !has("method=ListJobs", "person="+mallory, "role=admin", "code=Unauthenticated", "err=") {
		t.Errorf("no audit line of mallory's refused call:\n%s", log)
	}
	if !has("method=StopJob", "person="+alice, "role=developer", "code=PermissionDenied", "job="+jobs["shared admin"].Id, "err=") {
		t.Errorf("no audit line of alice's refused stop:\n%s", log)
	}
}
