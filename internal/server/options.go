package server

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
)

// grpcOptions are the gRPC server's options: mutual TLS from the current
// credentials, then for every call metrics, the re-check of the caller
// against the current credentials, authorization, and the CRL gate (a
// client with an older CRL gets this node's before its call runs,
// crlgate.go); and the connection limits of the config.
func (s *Server) grpcOptions() ([]grpc.ServerOption, error) {
	conns, err := s.cfg.Connections()
	if err != nil {
		return nil, err
	}
	s.conns = conns
	g := &guard{tls: s.tls, now: time.Now}
	return []grpc.ServerOption{
		grpc.Creds(countingCreds{credentials.NewTLS(s.tls.config()), s.metrics.handshakes}),
		grpc.ChainUnaryInterceptor(s.metrics.unary, g.unary, unaryAuthz, s.crlGateUnary),
		grpc.ChainStreamInterceptor(s.metrics.stream, g.stream, streamAuthz, s.crlGateStream),
		// The handshake check happens once per connection; a maximum age
		// makes every client handshake again, against the current trust.
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: conns.MaxAge, MaxConnectionAgeGrace: conns.MaxAgeGrace}),
		// gRPC's default is 120 s: a silent socket would hold its slot
		// (security.maxPendingHandshakes) that long.
		grpc.ConnectionTimeout(conns.HandshakeTimeout),
	}, nil
}
