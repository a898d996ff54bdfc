// Package server is a joblet node's gRPC server: mutual TLS, role-based
// authorization from the client certificate, the job and node services.
package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/reflection"

	"github.com/ehsaniara/joblet/internal/buildinfo"
	"github.com/ehsaniara/joblet/internal/pki"

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
	health     *health.Server
	conns      config.Connections
	streams    *streamLimit
	reclaim    *reclaimer
	offers     *offerGate
	// state is held (a one-slot semaphore) by a refresh with its reload
	// and by a CRL taken from a caller: neither undoes the other.
	state chan struct{}
	// established caps the authenticated connections (conns.go).
	established *connLimit
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
	// AuditLog gets the audit line of every call (audit.go); nil: the
	// server's log. joblet server gives it a batched writer
	// (internal/logbatch), so a line per call does not cost a write(2).
	AuditLog *slog.Logger
}

// New prepares a server from its config; Serve starts it, Run keeps its
// certificates current.
func New(cfg *config.Server, opts Options, log *slog.Logger) (*Server, error) {
	creds, err := CredentialsFromConfig(cfg.Security)
	if err != nil {
		return nil, err
	}
	if gap := creds.CRLGap(); gap != "" {
		log.Error("refusing every call", "reason", gap)
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
	s := &Server{cfg: cfg, opts: opts, tls: &tlsSource{}, jobs: mgr, log: log, refreshNow: make(chan struct{}, 1), reclaim: newReclaimer(),
		offers: newOfferGate(), state: make(chan struct{}, 1)}
	s.tls.set(creds)
	s.metrics = newMetrics(s)
	gopts, err := s.grpcOptions()
	if err != nil {
		return nil, err
	}
	s.grpc = grpc.NewServer(gopts...)
	pb.RegisterJobServiceServer(s.grpc, &jobService{jobs: s.jobs, pageMax: cmp.Or(cfg.Jobs.ListPageMax, DefaultListPageMax)})
	pb.RegisterNodeServiceServer(s.grpc, &nodeService{nodeID: cfg.Server.NodeID, version: buildinfo.Version, tls: s.tls, isolation: s.jobs.Isolation(), offer: s.offer})
	// The standard health service (NOT_SERVING until Serve, and again from
	// Shutdown on) and server reflection, so generic tools such as grpcurl
	// and load balancers' gRPC health checks work, behind the same mTLS
	// and authorization as everything else.
	s.health = health.NewServer()
	s.setServing(healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(s.grpc, s.health)
	reflection.Register(s.grpc)
	return s, nil
}

// setServing sets the health of the server as a whole and of each service.
func (s *Server) setServing(st healthpb.HealthCheckResponse_ServingStatus) {
	for name := range s.grpc.GetServiceInfo() {
		s.health.SetServingStatus(name, st)
	}
	s.health.SetServingStatus("", st)
}

// Serve accepts connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error {
	l = newPendingListener(l, s.conns.MaxPendingHandshakes, s.metrics.pendingDropped, s.reclaim)
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go s.reclaim.run(ctx, s.log)
	leaf := s.tls.cur.Load().Leaf
	s.setServing(healthpb.HealthCheckResponse_SERVING)
	refresh := "off (the config names no store)"
	if s.opts.Refresh != nil {
		refresh = s.opts.RefreshInterval.String()
	}
	s.log.Info("joblet serving", "address", l.Addr().String(), "nodeId", s.cfg.Server.NodeID,
		"serverCertSerial", pki.SerialHex(leaf.SerialNumber), "notAfter", leaf.NotAfter, "refreshInterval", refresh)
	if err := s.grpc.Serve(l); err != nil {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// Listen binds the configured address. Call it before reporting the node
// ready: a port another process holds fails here, at once, naming the
// address and what to do.
func (s *Server) Listen() (net.Listener, error) {
	addr := s.cfg.ListenAddr()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, ListenError(addr, err)
	}
	return l, nil
}

// ListenError explains a failed bind of addr.
func ListenError(addr string, err error) error {
	switch {
	case errors.Is(err, syscall.EADDRINUSE):
		return fmt.Errorf("listen %s: address already in use: another process holds the port; set server.port in joblet-config.yml (JOBLET_SERVER_PORT at bootstrap) or stop it", addr)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		return fmt.Errorf("listen %s: %w: no interface of this machine has that address; set server.address in joblet-config.yml", addr, err)
	case errors.Is(err, syscall.EACCES):
		return fmt.Errorf("listen %s: %w: ports below 1024 need privileges; choose another server.port", addr, err)
	}
	return fmt.Errorf("listen %s: %w", addr, err)
}

// ListenAndServe listens on the configured address and serves; a failed
// bind returns at once.
func (s *Server) ListenAndServe() error {
	l, err := s.Listen()
	if err != nil {
		return err
	}
	return s.Serve(l)
}

// Shutdown stops accepting, lets calls finish, and stops running jobs.
func (s *Server) Shutdown(ctx context.Context) {
	// Health checks see the node going before its connections do.
	s.health.Shutdown()
	done := make(chan struct{})
	go func() { s.grpc.GracefulStop(); close(done) }()
	// Jobs are stopped alongside (a follower's stream ends when its job
	// does), and waited for: their work directories go with them.
	jobsDone := make(chan struct{})
	go func() { s.jobs.Shutdown(ctx); close(jobsDone) }()
	select {
	case <-done:
	case <-ctx.Done():
		s.grpc.Stop()
	}
	select {
	case <-jobsDone:
	case <-ctx.Done():
	}
}
