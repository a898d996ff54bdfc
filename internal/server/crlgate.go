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
// Otherwise the call runs and its header carries the node's number, which
// tells the client this node speaks the protocol. A call without the
// number (an older rnx, grpcurl) is not touched. So a client learns a newer
// CRL before anything it asked of the node is done, at the cost of one
// metadata field per call instead of a GetNodeInfo per command.

// behind reports whether the client that sent md holds an older CRL than
// creds; asked says whether it sent a number at all.
func behind(md metadata.MD, creds *Credentials) (asked, older bool) {
	v := md.Get(pb.CRLNumberKey)
	if len(v) == 0 {
		return false, false
	}
	held, ok := pb.ParseCRLNumber(v[0])
	if !ok || creds.CRLNumber == nil {
		return true, false
	}
	return true, held == nil || held.Cmp(creds.CRLNumber) < 0
}

func (s *Server) crlGateUnary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	creds := s.tls.cur.Load()
	asked, older := behind(md, creds)
	if !asked {
		return h(ctx, req)
	}
	if older {
		grpc.SetTrailer(ctx, metadata.Pairs(pb.CRLTrailerKey, creds.CRLPEM))
		return nil, newerCRL(creds)
	}
	grpc.SetHeader(ctx, metadata.Pairs(pb.CRLNumberKey, creds.crlNumber))
	return h(ctx, req)
}

func (s *Server) crlGateStream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	creds := s.tls.cur.Load()
	asked, older := behind(md, creds)
	if !asked {
		return h(srv, ss)
	}
	if older {
		ss.SetTrailer(metadata.Pairs(pb.CRLTrailerKey, creds.CRLPEM))
		return newerCRL(creds)
	}
	ss.SetHeader(metadata.Pairs(pb.CRLNumberKey, creds.crlNumber))
	return h(srv, ss)
}

func newerCRL(creds *Credentials) error {
	return status.Error(codes.FailedPrecondition, pb.CRLNewerPrefix+"this node holds CRL number "+creds.crlNumber+": take it from the trailer and call again")
}
