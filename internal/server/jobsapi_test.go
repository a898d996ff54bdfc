package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
)

// RunJob's environment and limits, and the reason and limits in Job.
func TestRunJobEnvAndLimits(t *testing.T) {
	f := startNode(t, nil, func(c *config.Server) { c.Jobs.MemoryMax, c.Jobs.DiskDefault, c.Jobs.DiskMax = "256M", "32M", "64M" })
	c := dial(t, "developer", f.rnx.Nodes["developer"])
	j, err := c.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "sh", Args: []string{"-c", "echo $FOO; x=aaaaaaaaaaaaaaaa; while :; do x=$x$x; done"},
		Env: []string{"FOO=bar"}, MaxMemoryBytes: 64 << 20, MaxProcs: 20})
	if err != nil {
		t.Fatal(err)
	}
	if j.MaxMemoryBytes != 64<<20 || j.MaxProcs != 20 || j.MaxCpuPercent != 100 || j.MaxDiskBytes != 32<<20 {
		t.Errorf("limits in force %+v", j)
	}
	var st *pb.Job
	for t0 := time.Now(); time.Since(t0) < 20*time.Second; time.Sleep(50 * time.Millisecond) {
		if st, err = c.Jobs.GetJobStatus(ctx(t), &pb.GetJobStatusRequest{Id: j.Id}); err != nil || st.Status != "RUNNING" {
			break
		}
	}
	if st.Status != "FAILED" || st.Reason != "killed at its memory limit (64 MiB)" {
		t.Fatalf("the memory hog ended as %+v %v", st, err)
	}
	if out, _ := readLogs(ctx(t), c, j.Id, "bar"); out != "bar\n" {
		t.Errorf("the job's FOO: %q", out)
	}

	_, err = c.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "true", MaxMemoryBytes: 512 << 20})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "jobs.memoryMax") || !strings.Contains(err.Error(), "256 MiB") {
		t.Errorf("above the ceiling: %v", err)
	}
	_, err = c.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "true", MaxDiskBytes: 128 << 20})
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "jobs.diskMax") || !strings.Contains(err.Error(), "64 MiB") {
		t.Errorf("disk above the ceiling: %v", err)
	}
	for _, bad := range []*pb.RunJobRequest{{Command: "true", Env: []string{"NOVALUE"}}, {Command: "true", MaxProcs: -1}, {Command: "true", MaxDiskBytes: -1}} {
		if _, err := c.Jobs.RunJob(ctx(t), bad); status.Code(err) != codes.InvalidArgument {
			t.Errorf("%v: %v, want InvalidArgument", bad, err)
		}
	}
	info, err := c.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{})
	if err != nil || !strings.HasPrefix(info.JobIsolation, "full (uid ") || !strings.Contains(info.JobIsolation, "at most 256 MiB") {
		t.Errorf("isolation %q %v", info.GetJobIsolation(), err)
	}
}

// ListJobs pages: every job once, in start order, no page above the node's
// maximum, whatever page size the client asks for.
func TestListJobsPages(t *testing.T) {
	f := startNode(t, nil, func(c *config.Server) { c.Jobs.ListPageMax = 3 })
	c := dial(t, "developer", f.rnx.Nodes["developer"])
	var want []string
	for i := 0; i < 8; i++ {
		j, err := c.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "echo", Args: []string{fmt.Sprint(i)}})
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, j.Id)
	}
	for _, size := range []int32{0, 2, 50} {
		var got []string
		token, pages := "", 0
		for {
			r, err := c.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{PageSize: size, PageToken: token})
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Jobs) > 3 || size > 0 && len(r.Jobs) > int(size) {
				t.Errorf("page size %d: a page of %d", size, len(r.Jobs))
			}
			for _, j := range r.Jobs {
				got = append(got, j.Id)
			}
			pages++
			if token = r.NextPageToken; token == "" || pages > 10 {
				break
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("page size %d: listed\n%v\nwant\n%v", size, got, want)
		}
	}
	if _, err := c.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{PageToken: "garbage!"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("bad token: %v", err)
	}
}
