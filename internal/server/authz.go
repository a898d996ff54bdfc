package server

import (
	"context"
	"crypto/x509"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
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

type callerKey struct{}

// Caller is who makes a call, as the verified client certificate says:
// the role, and the person when the certificate names one (`rnx login`:
// the canonical ARN, a role's session as "#SESSION"). A shared role
// certificate (rnx-config-ROLE.yml) names no person: Person is "".
type Caller struct {
	Role   pki.Role
	Person string
}

// SharedPerson is how a human-readable record (the audit line, rnx's
// tables) shows the person of a call made with a shared role certificate:
// whoever holds the role's config file. The API and JSON leave it empty.
const SharedPerson = "shared"

// Who is the person as the audit line shows them: the ARN, or
// SharedPerson.
func (c Caller) Who() string {
	if c.Person == "" {
		return SharedPerson
	}
	return c.Person
}

// callerOf reads the caller from a verified client certificate.
func callerOf(leaf *x509.Certificate) (Caller, error) {
	role, err := pki.RoleOf(leaf)
	if err != nil {
		return Caller{}, err
	}
	p, isPerson, err := pki.PersonOf(leaf)
	if err != nil {
		return Caller{}, err
	}
	c := Caller{Role: role}
	if isPerson {
		c.Person = p.ARN
	}
	return c, nil
}

// CallerFrom returns the caller stored by the interceptors.
func CallerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey{}).(Caller)
	return c
}

// RoleFrom returns the caller's role stored by the interceptors.
func RoleFrom(ctx context.Context) pki.Role { return CallerFrom(ctx).Role }

// peerLeaf is the verified client certificate, if any.
func peerLeaf(ctx context.Context) (*x509.Certificate, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, false
	}
	info, ok := tlsInfo(p.AuthInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, false
	}
	return info.State.VerifiedChains[0][0], true
}

// peerCaller reads the caller from the verified client certificate, if
// any: for what runs outside authorization (metrics, the audit line).
func peerCaller(ctx context.Context) (Caller, bool) {
	id := connIDOf(ctx)
	return id.caller, id.leaf != nil && id.err == nil
}

// connID is who a connection's calls come from: its verified client
// certificate (nil for none), the caller it names (or why it names none)
// and the audit line's names. A connection keeps its certificate and
// address, so a counted connection works it out on its first call only,
// not on every call for authorization, metrics and the audit line.
type connID struct {
	leaf   *x509.Certificate
	caller Caller
	err    error
	audit  auditID
}

func connIDOf(ctx context.Context) *connID {
	e := estOf(ctx)
	if e != nil {
		if id := e.id.Load(); id != nil {
			return id
		}
	}
	id := &connID{audit: auditID{role: "none", person: "none"}}
	if leaf, ok := peerLeaf(ctx); ok {
		id.leaf = leaf
		id.caller, id.err = callerOf(leaf)
		id.audit.serial = pki.SerialHex(leaf.SerialNumber)
		if id.err == nil {
			id.audit.role, id.audit.person = string(id.caller.Role), capped(id.caller.Who())
		}
	}
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		id.audit.from = p.Addr.String()
	}
	if e != nil {
		e.id.Store(id)
	}
	return id
}

// authorize reads the caller from the verified client certificate and
// checks the role against permissions.
func authorize(ctx context.Context, method string) (context.Context, error) {
	if _, ok := peer.FromContext(ctx); !ok {
		return nil, status.Error(codes.Unauthenticated, "no peer information")
	}
	id := connIDOf(ctx)
	if id.leaf == nil {
		return nil, status.Error(codes.Unauthenticated, "no verified client certificate")
	}
	if id.err != nil {
		return nil, status.Errorf(codes.PermissionDenied, "denied: %v", id.err)
	}
	if !Allowed(id.caller.Role, method) {
		return nil, status.Errorf(codes.PermissionDenied, "role %q may not call %s", id.caller.Role, shortName(method))
	}
	return context.WithValue(ctx, callerKey{}, id.caller), nil
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
