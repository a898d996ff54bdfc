package server

import (
	"context"
	"math/big"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

// headerStream is the least of a server stream grpc.SetHeader needs.
type headerStream struct{ header metadata.MD }

func (s *headerStream) Method() string { return "/joblet.v1.NodeService/GetNodeInfo" }
func (s *headerStream) SetHeader(md metadata.MD) error {
	s.header = metadata.Join(s.header, md)
	return nil
}
func (s *headerStream) SendHeader(md metadata.MD) error { return nil }
func (s *headerStream) SetTrailer(md metadata.MD) error { return nil }

// BenchmarkCRLGate is the gate alone on its common call: the client holds
// the node's CRL, on a connection already told the node's number. What it
// costs per call is what the gated path costs beyond the plain one.
func BenchmarkCRLGate(b *testing.B) {
	s := &Server{tls: &tlsSource{}}
	number := big.NewInt(0x1234)
	s.tls.cur.Store(&Credentials{CRLNumber: number, crlNumber: pb.FormatCRLNumber(number)})
	conn := peer.NewContext(context.Background(), &peer.Peer{AuthInfo: &connInfo{est: &estConn{}}})
	in := metadata.NewIncomingContext(conn, metadata.Pairs(pb.CRLNumberKey, pb.FormatCRLNumber(number), "user-agent", "rnx", ":authority", "node"))
	info := &grpc.UnaryServerInfo{FullMethod: pb.NodeService_GetNodeInfo_FullMethodName}
	h := func(context.Context, any) (any, error) { return nil, nil }
	b.ReportAllocs()
	for b.Loop() {
		ctx := grpc.NewContextWithServerTransportStream(in, &headerStream{})
		if _, err := s.crlGateUnary(ctx, nil, info, h); err != nil {
			b.Fatal(err)
		}
	}
}
