package server

import (
	"cmp"
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/ehsaniara/joblet/internal/config"
)

// grpcOptions are the gRPC server's options: mutual TLS from the current
// credentials, then for every call the audit line (audit.go), metrics,
// the re-check of the caller against the current credentials,
// authorization, and the CRL gate (a client with an older CRL gets this
// node's before its call runs, crlgate.go); and the connection limits of
// the config.
func (s *Server) grpcOptions() ([]grpc.ServerOption, error) {
	conns, err := s.cfg.Connections()
	if err != nil {
		return nil, err
	}
	s.conns = conns
	s.streams = newStreamLimit(conns.MaxStreamsPerRole, s.metrics.streams, s.reclaim)
	nofile := openFileLimit()
	s.established = newConnLimit(ConnLimitFor(conns.MaxConnections, conns.MaxPendingHandshakes, nofile), s.metrics.conns, s.metrics.evicted)
	s.log.Info("connection limits", "maxConnections", s.established.max, "configured", conns.MaxConnections,
		"openFileLimit", nofile, "maxPendingHandshakes", conns.MaxPendingHandshakes)
	g := &guard{tls: s.tls, now: time.Now}
	a := audit{log: cmp.Or(s.opts.AuditLog, s.log)}
	return []grpc.ServerOption{
		grpc.Creds(countingCreds{credentials.NewTLS(s.tls.config()), s.metrics.handshakes, s.established}),
		// First: which authenticated connections have calls open (conns.go).
		grpc.ChainUnaryInterceptor(s.established.unary, a.unary, s.metrics.unary, g.unary, unaryAuthz, s.crlGateUnary),
		grpc.ChainStreamInterceptor(s.established.stream, a.stream, s.metrics.stream, g.stream, streamAuthz, s.streams.stream, s.crlGateStream),
		// The handshake check happens once per connection; a maximum age
		// makes every client handshake again, against the current trust.
		// An idle connection is closed; a silent one is pinged, and closed
		// when its client has gone (its streams with it).
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionAge: conns.MaxAge, MaxConnectionAgeGrace: conns.MaxAgeGrace,
			MaxConnectionIdle: conns.MaxIdle, Time: conns.KeepaliveTime, Timeout: config.KeepaliveTimeout}),
		// A client pinging more often than this is closed (gRPC's
		// ENHANCE_YOUR_CALM); one with no call open may ping too.
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: config.KeepaliveMinTime, PermitWithoutStream: true}),
		// Per connection; a gRPC client's call past it waits for a slot.
		grpc.MaxConcurrentStreams(uint32(conns.MaxStreamsPerConn)),
		// gRPC's default is 120 s: a silent socket would hold its slot
		// (security.maxPendingHandshakes) that long.
		grpc.ConnectionTimeout(conns.HandshakeTimeout),
		// Calls run on goroutines kept from call to call, whose stacks
		// have grown to the interceptors' depth already: a goroutine per
		// call grew its stack on every call (runtime.morestack was a
		// twentieth of the node's CPU at 16 clients). When every worker
		// is busy a call gets a goroutine of its own, as before, so a
		// slow call never queues another.
		grpc.NumStreamWorkers(StreamWorkers()),
	}, nil
}

// StreamWorkers is how many kept goroutines serve calls: a few per core,
// since only those run at once and a call waiting on I/O frees its core.
// (grpc.NumStreamWorkers is marked experimental in grpc-go; without it a
// node works as before, a goroutine per call.)
func StreamWorkers() uint32 { return uint32(4 * runtime.GOMAXPROCS(0)) }
