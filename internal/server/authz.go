package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	reflectionv1alpha "google.golang.org/grpc/reflection/grpc_reflection_v1alpha"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/pki"
)

var (
	readers    = []pki.Role{pki.Admin, pki.Maintainer, pki.Developer, pki.Reader}
	developers = []pki.Role{pki.Admin, pki.Maintainer, pki.Developer}
)

// permissions maps every RPC to the roles allowed to call it. An RPC missing
// here is denied to everyone: new methods must be placed deliberately. What
// a role may do with one job (another role's) is decided per job in
// jobaccess.go; readers never read output (a job's secrets show there) and
// start no jobs of their own, so GetJobLogs is refused them here.
var permissions = map[string][]pki.Role{
	pb.JobService_ListJobs_FullMethodName:     readers,
	pb.JobService_GetJobStatus_FullMethodName: readers,
	pb.JobService_GetJobLogs_FullMethodName:   developers,
	pb.NodeService_GetNodeInfo_FullMethodName: readers,
	// A CRL is root-signed: whoever carries it chooses nothing (offer.go).
	pb.NodeService_OfferCRL_FullMethodName: readers,
	pb.JobService_RunJob_FullMethodName:    developers,
	pb.JobService_StopJob_FullMethodName:   developers,

	// The standard health and reflection services describe the node, not
	// its jobs: every valid role may call them (an unauthenticated client
	// still cannot complete the handshake).
	healthpb.Health_Check_FullMethodName:                                   readers,
	healthpb.Health_List_FullMethodName:                                    readers,
	healthpb.Health_Watch_FullMethodName:                                   readers,
	reflectionv1.ServerReflection_ServerReflectionInfo_FullMethodName:      readers,
	reflectionv1alpha.ServerReflection_ServerReflectionInfo_FullMethodName: readers,
}

// Allowed reports whether role may call the full method name.
func Allowed(role pki.Role, method string) bool {
	for _, r := range permissions[method] {
		if r == role {
			return true
		}
	}
	return false
}

type roleKey struct{}

// RoleFrom returns the caller's role stored by the interceptors.
func RoleFrom(ctx context.Context) pki.Role {
	r, _ := ctx.Value(roleKey{}).(pki.Role)
	return r
}

// peerRole reads the role from the verified client certificate, if any.
func peerRole(ctx context.Context) (pki.Role, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", false
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	r, err := pki.RoleOf(info.State.VerifiedChains[0][0])
	return r, err == nil
}

// authorize reads the role from the verified client certificate and checks
// it against permissions.
func authorize(ctx context.Context, method string) (context.Context, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	leaf := info.State.VerifiedChains[0][0]
	role, err := pki.RoleOf(leaf)
	if err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "denied: %v", err)
	}
	if !Allowed(role, method) {
		return nil, status.Errorf(codes.PermissionDenied, "role %q may not call %s", role, shortName(method))
	}
	return context.WithValue(ctx, roleKey{}, role), nil
}

func shortName(method string) string {
	for i := len(method) - 1; i >= 0; i-- {
		if method[i] == '/' {
			return method[i+1:]
		}
	}
	return method
}

func unaryAuthz(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	ctx, err := authorize(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

type roleStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s roleStream) Context() context.Context { return s.ctx }

func streamAuthz(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := authorize(ss.Context(), info.FullMethod)
	if err != nil {
		return err
	}
	return h(srv, roleStream{ServerStream: ss, ctx: ctx})
}
