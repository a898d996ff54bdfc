// Package server is a joblet node's gRPC server: mutual TLS, role-based
// authorization from the client certificate, the job and node services.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/ehsaniara/joblet/internal/buildinfo"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/jobs"
)

// Server is one running node.
type Server struct {
	cfg        *config.Server
	opts       Options
	tls        *tlsSource
	jobs       *jobs.Manager
	grpc       *grpc.Server
	log        *slog.Logger
	refreshNow chan struct{}
	metrics    *metrics
}

// Options for keeping a running server's certificates current.
type Options struct {
	// ConfigPath is watched; when it changes the TLS material is reloaded.
	ConfigPath string
	FilePoll   time.Duration // default 1s
	// Refresh, when set, brings the config file up to date with the store
	// (trust bundle, renewal) and reports whether it changed it.
	Refresh         func(ctx context.Context) (changed bool, err error)
	RefreshInterval time.Duration
}

// New prepares a server from its config; Serve starts it, Run keeps its
// certificates current.
func New(cfg *config.Server, opts Options, log *slog.Logger) (*Server, error) {
	creds, err := CredentialsFromConfig(cfg.Security)
	if err != nil {
		return nil, err
	}
	mgr, err := newJobs(cfg, opts.ConfigPath, log)
	if err != nil {
		return nil, err
	}
	if opts.RefreshInterval <= 0 {
		if opts.RefreshInterval, _, err = cfg.Durations(); err != nil {
			return nil, err
		}
	}
	s := &Server{cfg: cfg, opts: opts, tls: &tlsSource{}, jobs: mgr, log: log, refreshNow: make(chan struct{}, 1)}
	s.tls.set(creds)
	s.metrics = newMetrics(s)
	s.grpc = grpc.NewServer(
		grpc.Creds(countingCreds{credentials.NewTLS(s.tls.config()), s.metrics.handshakes}),
		grpc.ChainUnaryInterceptor(s.metrics.unary, unaryAuthz),
		grpc.ChainStreamInterceptor(s.metrics.stream, streamAuthz),
	)
	pb.RegisterJobServiceServer(s.grpc, &jobService{jobs: s.jobs})
	pb.RegisterNodeServiceServer(s.grpc, &nodeService{nodeID: cfg.Server.NodeID, version: buildinfo.Version, tls: s.tls})
	return s, nil
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	leaf := s.tls.cur.Load().Leaf
	s.log.Info("joblet serving", "address", l.Addr().String(), "nodeId", s.cfg.Server.NodeID,
		"serverCertSerial", leaf.SerialNumber.Text(16), "notAfter", leaf.NotAfter)
	if err := s.grpc.Serve(l); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// ListenAndServe listens on the configured address.
func (s *Server) ListenAndServe() error {
	l, err := net.Listen("tcp", s.cfg.ListenAddr())
	if err != nil {
		return fmt.Errorf("listen on %s: %w", s.cfg.ListenAddr(), err)
	}
	return s.Serve(l)
}

// Shutdown stops accepting, lets calls finish, and stops running jobs.
func (s *Server) Shutdown(ctx context.Context) {
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	go s.jobs.Shutdown(ctx)
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
}
