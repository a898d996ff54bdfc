package server_test

import (
	"context"
	"io"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
)

// The per-job rules of docs/JOBS.md ("Roles and jobs"), through the real
// server: admin and maintainer see and stop every job; a developer sees the
// arguments and output of, and stops, only jobs started by developer; a
// reader sees every job's status but no arguments and no output.
func TestJobRoles(t *testing.T) {
	f := startNode(t, nil)
	conn := map[string]*client.Conn{}
	for role, node := range map[string]string{"admin": "default", "maintainer": "maintainer", "developer": "developer", "reader": "reader"} {
		conn[role] = dial(t, node, f.rnx.Nodes[node])
	}
	run := func(role, marker string) *pb.Job {
		j, err := conn[role].Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "sh", Args: []string{"-c", "echo " + marker + "; sleep 60"}})
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	adminJob, devJob := run("admin", "secret-of-admin"), run("developer", "secret-of-developer")
	t.Cleanup(func() {
		for _, j := range []*pb.Job{adminJob, devJob} {
			conn["admin"].Jobs.StopJob(ctx(t), &pb.StopJobRequest{Id: j.Id})
		}
	})

	for _, tc := range []struct {
		role     string
		job      *pb.Job
		marker   string
		sees     bool // arguments and output
		stopCode codes.Code
	}{
		{"reader", adminJob, "secret-of-admin", false, codes.PermissionDenied},
		{"reader", devJob, "secret-of-developer", false, codes.PermissionDenied},
		{"developer", adminJob, "secret-of-admin", false, codes.PermissionDenied},
		{"developer", devJob, "secret-of-developer", true, codes.OK},
		{"maintainer", adminJob, "secret-of-admin", true, codes.OK},
	} {
		c := conn[tc.role]
		st, err := c.Jobs.GetJobStatus(ctx(t), &pb.GetJobStatusRequest{Id: tc.job.Id})
		if err != nil {
			t.Fatalf("%s status of %s's job: %v", tc.role, tc.job.StartedBy, err)
		}
		if st.Status != "RUNNING" || st.Command != "sh" || st.ArgsHidden == tc.sees || (len(st.Args) == 2) != tc.sees {
			t.Errorf("%s sees %s's job as %+v; want args shown: %v", tc.role, tc.job.StartedBy, st, tc.sees)
		}
		list, err := c.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{})
		if err != nil || len(list.Jobs) != 2 {
			t.Fatalf("%s list: %v %v", tc.role, list, err)
		}
		for _, j := range list.Jobs {
			if j.Id == tc.job.Id && strings.Contains(strings.Join(j.Args, " "), tc.marker) != tc.sees {
				t.Errorf("%s lists %s's job as %+v", tc.role, tc.job.StartedBy, j)
			}
		}
		out, err := readLogs(ctx(t), c, tc.job.Id, tc.marker)
		if tc.sees && (err != nil || !strings.Contains(out, tc.marker)) {
			t.Errorf("%s reading %s's output: %q %v", tc.role, tc.job.StartedBy, out, err)
		}
		if !tc.sees && (status.Code(err) != codes.PermissionDenied || strings.Contains(out, tc.marker) || !strings.Contains(err.Error(), tc.role)) {
			t.Errorf("%s reading %s's output: %q %v, want PermissionDenied naming the role", tc.role, tc.job.StartedBy, out, err)
		}
		if tc.stopCode != codes.OK {
			_, err := c.Jobs.StopJob(ctx(t), &pb.StopJobRequest{Id: tc.job.Id})
			if status.Code(err) != tc.stopCode {
				t.Errorf("%s stopping %s's job: %v, want %v", tc.role, tc.job.StartedBy, err, tc.stopCode)
			}
		}
	}
	// The refused stops left both jobs running; the allowed ones work.
	for _, stop := range []struct {
		role string
		job  *pb.Job
	}{{"developer", devJob}, {"maintainer", adminJob}} {
		j, err := conn[stop.role].Jobs.StopJob(ctx(t), &pb.StopJobRequest{Id: stop.job.Id})
		if err != nil || j.Status != "STOPPED" || j.Reason != "stopped" {
			t.Errorf("%s stopping %s's job: %+v %v", stop.role, stop.job.StartedBy, j, err)
		}
	}
}

// readLogs reads a job's output until marker shows (the job keeps running).
func readLogs(cx context.Context, c *client.Conn, id, marker string) (string, error) {
	s, err := c.Jobs.GetJobLogs(cx, &pb.GetJobLogsRequest{Id: id, Follow: true})
	if err != nil {
		return "", err
	}
	var out strings.Builder
	for !strings.Contains(out.String(), marker) {
		ch, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return out.String(), err
		}
		out.Write(ch.Data)
	}
	return out.String(), nil
}
