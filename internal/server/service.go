package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/jobs"
	"github.com/ehsaniara/joblet/internal/pki"
)

type jobService struct {
	pb.UnimplementedJobServiceServer
	jobs *jobs.Manager
}

func toPB(s jobs.Snapshot) *pb.Job {
	j := &pb.Job{Id: s.ID, Command: s.Command, Args: s.Args, Status: s.Status, ExitCode: int32(s.ExitCode), Signal: int32(s.Signal),
		StartedUnixNano: s.Started.UnixNano(), StartedBy: s.StartedBy, OutputTruncated: s.OutputTruncated}
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
	snap, err := s.jobs.Run(r.Command, r.Args, string(RoleFrom(ctx)))
	if errors.Is(err, jobs.ErrLimit) || errors.Is(err, jobs.ErrUnavailable) {
		return nil, jobErr(err)
	} else if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	return toPB(snap), nil
}

func (s *jobService) ListJobs(ctx context.Context, _ *pb.ListJobsRequest) (*pb.ListJobsResponse, error) {
	var out pb.ListJobsResponse
	for _, j := range s.jobs.List() {
		out.Jobs = append(out.Jobs, toPB(j))
	}
	return &out, nil
}

func (s *jobService) GetJobStatus(ctx context.Context, r *pb.GetJobStatusRequest) (*pb.Job, error) {
	snap, err := s.jobs.Status(r.Id)
	if err != nil {
		return nil, jobErr(err)
	}
	return toPB(snap), nil
}

func (s *jobService) GetJobLogs(r *pb.GetJobLogsRequest, stream pb.JobService_GetJobLogsServer) error {
	err := s.jobs.Logs(stream.Context(), r.Id, r.Follow, func(c jobs.Chunk) error {
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
	snap, err := s.jobs.Stop(ctx, r.Id)
	if err != nil {
		return nil, jobErr(err)
	}
	return toPB(snap), nil
}

type nodeService struct {
	pb.UnimplementedNodeServiceServer
	nodeID, version string
	tls             *tlsSource
}

func (n *nodeService) GetNodeInfo(ctx context.Context, _ *pb.GetNodeInfoRequest) (*pb.NodeInfo, error) {
	c := n.tls.cur.Load()
	issuer := ""
	for _, ca := range c.CAList {
		if c.Leaf.CheckSignatureFrom(ca) == nil {
			issuer = pki.Fingerprint(ca)
		}
	}
	return &pb.NodeInfo{NodeId: n.nodeID, Version: n.version, ServerCertSerial: pki.SerialHex(c.Leaf.SerialNumber),
		ServerCertNotAfterUnix: c.Leaf.NotAfter.Unix(), CallerRole: string(RoleFrom(ctx)), ServerCertIssuerSha256: issuer,
		Crl: []byte(c.CRLPEM)}, nil
}
