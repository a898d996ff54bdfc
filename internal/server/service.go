package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/jobs"
)

type jobService struct {
	pb.UnimplementedJobServiceServer
	jobs    *jobs.Manager
	pageMax int // jobs.listPageMax
}

func toPB(s jobs.Snapshot) *pb.Job {
	j := &pb.Job{Id: s.ID, Command: s.Command, Args: s.Args, Status: s.Status, ExitCode: int32(s.ExitCode), Signal: int32(s.Signal),
		StartedUnixNano: s.Started.UnixNano(), StartedBy: s.StartedBy, StartedByPerson: s.StartedByPerson, OutputTruncated: s.OutputTruncated, Reason: s.Reason,
		MaxMemoryBytes: s.Limits.MemoryBytes, MaxCpuPercent: int32(s.Limits.CPUPercent), MaxProcs: int32(s.Limits.MaxProcs),
		MaxDiskBytes: s.Limits.DiskBytes}
	if !s.Ended.IsZero() {
		j.EndedUnixNano = s.Ended.UnixNano()
	}
	return j
}

func jobErr(err error) error {
	if errors.Is(err, jobs.ErrNotFound) {
		return status.Error(codes.NotFound, err.Error())
	}
	if errors.Is(err, jobs.ErrLimit) {
		return status.Error(codes.ResourceExhausted, err.Error())
	}
	if errors.Is(err, jobs.ErrUnavailable) {
		return status.Error(codes.FailedPrecondition, err.Error())
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.Internal, err.Error())
}

func (s *jobService) RunJob(ctx context.Context, r *pb.RunJobRequest) (*pb.Job, error) {
	c := CallerFrom(ctx)
	role := c.Role
	snap, err := s.jobs.Start(jobs.Request{Command: r.Command, Args: r.Args, Env: r.Env, StartedBy: string(role), StartedByPerson: c.Person,
		Limits: jobs.Limits{MemoryBytes: r.MaxMemoryBytes, CPUPercent: int(r.MaxCpuPercent), MaxProcs: int(r.MaxProcs), DiskBytes: r.MaxDiskBytes}})
	if errors.Is(err, jobs.ErrLimit) || errors.Is(err, jobs.ErrUnavailable) {
		return nil, jobErr(err)
	} else if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return view(role, snap), nil
}

func (s *jobService) ListJobs(ctx context.Context, r *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	size := s.pageMax
	if r.PageSize < 0 {
		return nil, status.Errorf(codes.InvalidArgument, "page_size %d is negative: give 0 (the node's maximum, %d) or more", r.PageSize, s.pageMax)
	}
	if r.PageSize > 0 && int(r.PageSize) < size {
		size = int(r.PageSize)
	}
	role := RoleFrom(ctx)
	list, next, err := page(s.jobs.List(), r.PageToken, size, func(j jobs.Snapshot) *pb.Job { return view(role, j) })
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return &pb.ListJobsResponse{Jobs: list, NextPageToken: next}, nil
}

func (s *jobService) GetJobStatus(ctx context.Context, r *pb.GetJobStatusRequest) (*pb.Job, error) {
	snap, err := s.jobs.Status(r.Id)
	if err != nil {
		return nil, jobErr(err)
	}
	return view(RoleFrom(ctx), snap), nil
}

func (s *jobService) GetJobLogs(r *pb.GetJobLogsRequest, stream pb.JobService_GetJobLogsServer) error {
	snap, err := s.jobs.Status(r.Id)
	if err != nil {
		return jobErr(err)
	}
	if role := RoleFrom(stream.Context()); !jobAccess(role, snap.StartedBy).output {
		return denied(role, snap, "read the output of")
	}
	err = s.jobs.Logs(stream.Context(), r.Id, r.Follow, func(c jobs.Chunk) error {
		st := pb.Stream_STREAM_STDOUT
		if c.Stream == jobs.Stderr {
			st = pb.Stream_STREAM_STDERR
		}
		return stream.Send(&pb.LogChunk{Data: c.Data, Stream: st, DroppedBytes: c.Dropped})
	})
	if err != nil {
		return jobErr(err)
	}
	return nil
}

func (s *jobService) StopJob(ctx context.Context, r *pb.StopJobRequest) (*pb.Job, error) {
	role := RoleFrom(ctx)
	snap, err := s.jobs.Status(r.Id)
	if err != nil {
		return nil, jobErr(err)
	}
	if !jobAccess(role, snap.StartedBy).stop {
		return nil, denied(role, snap, "stop")
	}
	if snap, err = s.jobs.Stop(ctx, r.Id); err != nil {
		return nil, jobErr(err)
	}
	return view(role, snap), nil
}

type nodeService struct {
	pb.UnimplementedNodeServiceServer
	nodeID, version string
	tls             *tlsSource
	// isolation is the jobs' isolation as NodeInfo says it; fixed when
	// the node starts, so it is written once, not on every call.
	isolation string
	offer     func(context.Context, *pb.OfferCRLRequest) (*pb.OfferCRLResponse, error)
}

// OfferCRL hands the node a CRL (offer.go).
func (n *nodeService) OfferCRL(ctx context.Context, req *pb.OfferCRLRequest) (*pb.OfferCRLResponse, error) {
	return n.offer(ctx, req)
}

func (n *nodeService) GetNodeInfo(ctx context.Context, _ *pb.GetNodeInfoRequest) (*pb.NodeInfo, error) {
	c := n.tls.cur.Load()
	return &pb.NodeInfo{NodeId: n.nodeID, Version: n.version, ServerCertSerial: c.serialHex,
		ServerCertNotAfterUnix: c.Leaf.NotAfter.Unix(), CallerRole: string(RoleFrom(ctx)), ServerCertIssuerSha256: c.IssuerSHA256,
		Crl: c.crl, JobIsolation: n.isolation, ClientIssuers: n.tls.issuers.list()}, nil
}
