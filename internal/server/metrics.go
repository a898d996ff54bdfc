package server

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
)

// metrics are a node's Prometheus metrics, on a registry of its own.
type metrics struct {
	reg        *prometheus.Registry
	handshakes *prometheus.CounterVec
	rpcs       *prometheus.CounterVec
	// pendingDropped counts pending handshakes closed to make room for a
	// newer connection (security.maxPendingHandshakes, listener.go).
	pendingDropped prometheus.Counter
	// streams is the streaming calls each role holds (streams.go).
	streams *prometheus.GaugeVec
	// crlOffers counts CRLs handed to the node by callers (offer.go).
	crlOffers *prometheus.CounterVec
	// conns is the authenticated connections each role holds, evicted
	// those closed to make room (security.maxConnections, conns.go).
	conns   *prometheus.GaugeVec
	evicted *prometheus.CounterVec
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "joblet_tls_handshake_failures_total",
		Help: "TLS handshakes the node refused or lost, by reason."}, []string{"reason"})
	m.rpcs = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "joblet_rpcs_total",
		Help: "RPCs by method, caller role and status code."}, []string{"method", "role", "code"})
	m.pendingDropped = prometheus.NewCounter(prometheus.CounterOpts{Name: "joblet_pending_handshakes_dropped_total",
		Help: "Connections closed before their handshake completed to make room for a newer one (security.maxPendingHandshakes)."})
	m.streams = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "joblet_streams",
		Help: "Streaming calls (log follows, health watches, reflection) open, by role; capped by security.maxStreamsPerRole."}, []string{"role"})
	m.crlOffers = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "joblet_crl_offers_total",
		Help: "CRLs callers handed the node (OfferCRL), by outcome: taken, held (the node had it), not_newer, refused (size, parse, signature, a dropped serial), rate_limited."}, []string{"outcome"})
	m.conns = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "joblet_connections",
		Help: "Authenticated connections open, by role; capped by security.maxConnections."}, []string{"role"})
	m.evicted = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "joblet_connections_evicted_total",
		Help: "Authenticated connections closed to make room for a newer one (security.maxConnections), by the closed one's role."}, []string{"role"})
	expiry := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "joblet_server_certificate_expiry_seconds",
		Help: "Seconds until the server certificate being served expires (negative: expired)."},
		func() float64 { return time.Until(s.tls.cur.Load().Leaf.NotAfter).Seconds() })
	m.reg.MustRegister(m.handshakes, m.rpcs, m.pendingDropped, m.streams, m.crlOffers, m.conns, m.evicted, expiry, &caCollector{s}, &jobsCollector{s}, &s.tls.issuers,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

var caExpiryDesc = prometheus.NewDesc("joblet_trusted_ca_expiry_seconds",
	"Seconds until each trusted CA certificate expires.", []string{"sha256", "subject"}, nil)

type caCollector struct{ s *Server }

func (c *caCollector) Describe(ch chan<- *prometheus.Desc) { ch <- caExpiryDesc }
func (c *caCollector) Collect(ch chan<- prometheus.Metric) {
	for _, ca := range c.s.tls.cur.Load().CAList {
		ch <- prometheus.MustNewConstMetric(caExpiryDesc, prometheus.GaugeValue, time.Until(ca.NotAfter).Seconds(),
			pki.Fingerprint(ca), ca.Subject.String())
	}
}

var jobsDesc = prometheus.NewDesc("joblet_jobs", "Jobs by state.", []string{"state"}, nil)

type jobsCollector struct{ s *Server }

func (c *jobsCollector) Describe(ch chan<- *prometheus.Desc) { ch <- jobsDesc }
func (c *jobsCollector) Collect(ch chan<- prometheus.Metric) {
	counts := map[string]int{"RUNNING": 0, "COMPLETED": 0, "FAILED": 0, "STOPPED": 0}
	for _, j := range c.s.jobs.List() {
		counts[j.Status]++
	}
	for state, n := range counts {
		ch <- prometheus.MustNewConstMetric(jobsDesc, prometheus.GaugeValue, float64(n), state)
	}
}

// handshakeReason names why a server-side handshake failed.
func handshakeReason(err error) string {
	msg := err.Error()
	switch {
	case strings.Contains(msg, "certificate revoked"):
		return "revoked_client_certificate"
	case strings.Contains(msg, "didn't provide a certificate"):
		return "no_client_certificate"
	case strings.Contains(msg, "unknown authority"):
		return "unknown_ca"
	case strings.Contains(msg, "expired or is not yet valid"):
		return "expired_client_certificate"
	case strings.Contains(msg, "protocol version"):
		return "protocol_version"
	case strings.Contains(msg, "remote error: tls:"):
		// The client refused the server's certificate (another fleet's
		// config, an outdated trust bundle, a name it does not hold).
		return "client_rejected_server_certificate"
	case strings.Contains(msg, "incompatible key usage"):
		return "wrong_key_usage"
	case errors.Is(err, io.EOF), strings.Contains(msg, "connection reset"):
		return "client_closed"
	case strings.Contains(msg, "first record does not look like a TLS handshake"):
		return "not_tls"
	}
	return "other"
}

// countingCreds counts failed server handshakes by reason and hands the
// successful ones to the connection limit.
type countingCreds struct {
	credentials.TransportCredentials
	failures *prometheus.CounterVec
	conns    *connLimit
}

func (c countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	handshakeEnded(conn)
	if err != nil {
		c.failures.WithLabelValues(handshakeReason(err)).Inc()
	} else if e := c.conns.established(conn, info); e != nil {
		if ti, ok := info.(credentials.TLSInfo); ok {
			info = &connInfo{TLSInfo: ti, est: e}
		}
	}
	return out, info, err
}

func (c countingCreds) Clone() credentials.TransportCredentials {
	return countingCreds{c.TransportCredentials.Clone(), c.failures, c.conns}
}

// unary records every call's method, role and code; it runs outside the
// authorization interceptor so denials are counted too.
func (m *metrics) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	resp, err := h(ctx, req)
	m.count(ctx, info.FullMethod, err)
	return resp, err
}

func (m *metrics) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	err := h(srv, ss)
	m.count(ss.Context(), info.FullMethod, err)
	return err
}

func (m *metrics) count(ctx context.Context, method string, err error) {
	role := "none"
	// The role only: a label per person would grow without bound (the
	// audit line names the person, audit.go).
	if c, ok := peerCaller(ctx); ok {
		role = string(c.Role)
	}
	m.rpcs.WithLabelValues(shortName(method), role, status.Code(err).String()).Inc()
}

// Handler serves /metrics and /healthz. /healthz answers 200 while the node
// serves a certificate that has not expired, so a load balancer's health
// check takes a node out before clients would fail on it.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		leaf := s.tls.cur.Load().Leaf
		if !time.Now().Before(leaf.NotAfter) {
			http.Error(w, "server certificate expired at "+leaf.NotAfter.UTC().Format(time.RFC3339), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}
