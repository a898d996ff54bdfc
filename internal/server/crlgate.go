package server

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

// How a client learns the fleet's CRL without a call of its own: rnx sends
// the number of the CRL it holds with every call (pb.CRLNumberKey: hex, or
// "none"). A node holding a newer CRL does not run the call: it answers
// FailedPrecondition with its CRL in the trailer (pb.CRLTrailerKey), and the
// client takes it, checks this node's certificate against it, and calls
// again without the number (so a CRL the client cannot use never loops).
// Otherwise the call runs, and its header carries the node's number
// whenever the client does not know it yet: the first call of a
// connection, the first after the node's CRL changed, and every call whose
// number differs from the node's (a client holding a newer CRL hands it
// over, client/learn.go). The header (and the refusal's trailer) also
// carries the version of the signed trust state the node holds
// (pb.TrustVersionKey), made once with the credentials: a client holding a
// newer state hands it over too, and the gate reads nothing more for it.
// The header tells the client this node speaks the protocol; a call with
// neither says the client's number is the node's. A call without the
// number (an older rnx, grpcurl) is not touched. So a client learns a newer CRL before anything it asked of the
// node is done, at the cost of one metadata field per call instead of a
// GetNodeInfo per command.
//
// The gate is on every call, so its common case (the client holds the
// node's CRL) is a string comparison and two atomic loads: no metadata
// copy, no number parsed, no header built (BenchmarkGetNodeInfo).

// behind reports whether a client that sent the CRL number v holds an
// older CRL than creds.
func behind(v string, creds *Credentials) bool {
	if v == creds.crlNumber || creds.CRLNumber == nil {
		return false
	}
	held, ok := pb.ParseCRLNumber(v)
	if !ok {
		return false
	}
	return held == nil || held.Cmp(creds.CRLNumber) < 0
}

// tell reports whether the call's header must carry the node's number: the
// client sent another, or its connection has not been told this one.
func tell(ctx context.Context, v string, creds *Credentials) bool {
	if v != creds.crlNumber {
		return true
	}
	e := estOf(ctx)
	if e == nil {
		return true
	}
	if e.toldCRL.Load() == creds {
		return false
	}
	e.toldCRL.Store(creds)
	return true
}

// crlNumberOf is the CRL number a call carries, if it does.
func crlNumberOf(ctx context.Context) (string, bool) {
	v := metadata.ValueFromIncomingContext(ctx, pb.CRLNumberKey)
	if len(v) == 0 {
		return "", false
	}
	return v[0], true
}

func (s *Server) crlGateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	v, asked := crlNumberOf(ctx)
	if !asked {
		return h(ctx, req)
	}
	creds := s.tls.cur.Load()
	if behind(v, creds) {
		grpc.SetTrailer(ctx, creds.crlTrailer)
		return nil, newerCRL(creds)
	}
	if tell(ctx, v, creds) {
		grpc.SetHeader(ctx, creds.crlHeader)
	}
	return h(ctx, req)
}

func (s *Server) crlGateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	v, asked := crlNumberOf(ss.Context())
	if !asked {
		return h(srv, ss)
	}
	creds := s.tls.cur.Load()
	if behind(v, creds) {
		ss.SetTrailer(creds.crlTrailer)
		return newerCRL(creds)
	}
	if tell(ss.Context(), v, creds) {
		ss.SetHeader(creds.crlHeader)
	}
	return h(srv, ss)
}

func newerCRL(creds *Credentials) error {
	return status.Error(codes.FailedPrecondition, pb.CRLNewerPrefix+"this node holds CRL number "+creds.crlNumber+": take it from the trailer and call again")
}
