package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
)

// A node takes a newer CRL from any authenticated caller (NodeService.
// OfferCRL): the operator's revoke pushing it (internal/push), or rnx
// carrying the one it holds to a node whose number is older (internal/
// client/learn.go). The CRL is signed by the fleet's root, so the carrier
// chooses nothing: the node verifies it against its own trusted CAs and
// takes it by the store's rule (certs.TakeOfferedCRL), then serves with it
// at once. It does not write the store.
//
// What the offers cost the node is bounded, cheapest check first:
//   - the size (MaxOfferedCRL), before anything is parsed;
//   - the number, parsed without the signature: an offer numbered at or
//     below the held CRL is answered at once and costs no token, so a
//     caller replaying old CRLs neither burns CPU nor delays a real push;
//   - then a token per signature check: each caller (its certificate from
//     its source: an IPv4 address, an IPv6 /64) has its own small bucket,
//     each certificate one across all its sources (a stolen certificate
//     used from a hundred addresses gets no more than from one), and all
//     callers share a larger one, admins apart: a flood of forged offers
//     from any non-admin certificate, from any number of sources, never
//     spends the tokens of the operator's push. An offer past any gets
//     RESOURCE_EXHAUSTED and is retried by its sender (push retries; rnx
//     carries again on its next call; the store's poll is the safety net).

// MaxOfferedCRL is the largest CRL a node takes from a caller: 256 KiB is
// thousands of entries, far above a fleet's revocations.
const MaxOfferedCRL = 256 << 10

// Offer rate limits: per caller and for the node.
const (
	offerCallerRate  = 2 // signature checks per second, per caller
	offerCallerBurst = 4
	offerCertRate    = 4 // per certificate, whatever its sources
	offerCertBurst   = 8
	offerNodeRate    = 50 // for all callers together: well under 1% of a core
	offerNodeBurst   = 100
	offerCallers     = 1024 // callers remembered; beyond, the map restarts
)

type offerGate struct {
	node  *rate.Limiter // every caller but admins
	admin *rate.Limiter // admins' (the operator's push)
	log   *rate.Limiter // refusals logged, so a flood does not flood the log

	mu      sync.Mutex
	callers map[[32]byte]*rate.Limiter // by certificate and source
	certs   map[[32]byte]*rate.Limiter // by certificate
	quiet   int                        // refusals not logged since the last logged one
}

func newOfferGate() *offerGate {
	return &offerGate{node: rate.NewLimiter(offerNodeRate, offerNodeBurst), admin: rate.NewLimiter(offerNodeRate, offerNodeBurst),
		log: rate.NewLimiter(1, 20), callers: map[[32]byte]*rate.Limiter{}, certs: map[[32]byte]*rate.Limiter{}}
}

// bucket is m's limiter for key, made at rate r, burst b when new.
func bucket(m *map[[32]byte]*rate.Limiter, key [32]byte, r rate.Limit, b int) *rate.Limiter {
	l := (*m)[key]
	if l == nil {
		if len(*m) >= offerCallers {
			*m = map[[32]byte]*rate.Limiter{}
		}
		l = rate.NewLimiter(r, b)
		(*m)[key] = l
	}
	return l
}

// allow takes a token for one signature check by c.
func (g *offerGate) allow(c offerCaller) bool {
	g.mu.Lock()
	l := bucket(&g.callers, c.id, offerCallerRate, offerCallerBurst)
	per := bucket(&g.certs, c.cert, offerCertRate, offerCertBurst)
	g.mu.Unlock()
	if !l.Allow() || !per.Allow() {
		return false
	}
	if c.admin {
		return g.admin.Allow()
	}
	return g.node.Allow()
}

// logRefusal says whether to log a refusal now, and how many were not.
func (g *offerGate) logRefusal() (bool, int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.log.Allow() {
		g.quiet++
		return false, 0
	}
	n := g.quiet
	g.quiet = 0
	return true, n
}

// offerCaller is who offers: the certificate from its source (id), the
// certificate alone, and whether its role is admin.
type offerCaller struct {
	id, cert [32]byte
	admin    bool
}

// caller identifies the client certificate and source of a call, with
// its role, person ("shared" for a shared role certificate) and serial
// for the log.
func caller(ctx context.Context) (c offerCaller, who string) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return c, "unknown"
	}
	ti, ok := tlsInfo(p.AuthInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return c, "unknown"
	}
	leaf := ti.State.PeerCertificates[0]
	// A role's certificate is shared by its users: with the source in
	// the key, someone holding a stolen copy elsewhere does not spend the
	// operator's tokens.
	h := sha256.New()
	h.Write(leaf.Raw)
	h.Write([]byte(sourceOf(p.Addr).String()))
	copy(c.id[:], h.Sum(nil))
	c.cert = sha256.Sum256(leaf.Raw)
	cl := CallerFrom(ctx)
	c.admin = cl.Role == pki.Admin
	return c, fmt.Sprintf("%s %s %s (%s)", cl.Role, cl.Who(), pki.SerialHex(leaf.SerialNumber), p.Addr)
}

func (s *Server) offerCRL(ctx context.Context, req *pb.OfferCRLRequest) (*pb.OfferCRLResponse, error) {
	id, who := caller(ctx)
	cur := s.tls.cur.Load()
	if len(req.Crl) > MaxOfferedCRL {
		s.metrics.crlOffers.WithLabelValues("refused").Inc()
		return nil, s.refuseOffer(codes.InvalidArgument, who, fmt.Sprintf("the offered CRL is %d bytes, above the %d a node takes", len(req.Crl), MaxOfferedCRL))
	}
	if string(req.Crl) == cur.CRLPEM {
		s.metrics.crlOffers.WithLabelValues("held").Inc()
		return &pb.OfferCRLResponse{Taken: true, CrlNumber: cur.crlNumber}, nil
	}
	number, err := certs.OfferedCRLNewer(cur.CRLNumber, req.Crl)
	if errors.Is(err, certs.ErrCRLNotNewer) {
		// Cheap, and not an attack on the node: a carrier with an older
		// CRL learns the node's number (and takes its CRL by the gate).
		s.metrics.crlOffers.WithLabelValues("not_newer").Inc()
		s.refuseOffer(codes.OK, who, err.Error())
		return &pb.OfferCRLResponse{CrlNumber: cur.crlNumber, Reason: err.Error()}, nil
	}
	if err != nil {
		s.metrics.crlOffers.WithLabelValues("refused").Inc()
		return nil, s.refuseOffer(codes.InvalidArgument, who, err.Error())
	}
	if !s.offers.allow(id) {
		s.metrics.crlOffers.WithLabelValues("rate_limited").Inc()
		return nil, s.refuseOffer(codes.ResourceExhausted, who, "too many CRL offers: retry in a second")
	}
	if err := certs.TakeOfferedCRL(cur.CRLPEM, req.Crl, cur.CAList); err != nil {
		code, outcome := codes.InvalidArgument, "refused"
		if errors.Is(err, certs.ErrCRLNotNewer) {
			code, outcome = codes.OK, "not_newer"
		}
		s.metrics.crlOffers.WithLabelValues(outcome).Inc()
		s.refuseOffer(code, who, err.Error())
		if code == codes.OK {
			return &pb.OfferCRLResponse{CrlNumber: cur.crlNumber, Reason: err.Error()}, nil
		}
		return nil, status.Error(code, err.Error())
	}
	if err := s.installCRL(ctx, req.Crl, who); err != nil {
		return nil, err
	}
	s.metrics.crlOffers.WithLabelValues("taken").Inc()
	now := s.tls.cur.Load()
	return &pb.OfferCRLResponse{Taken: now.CRLNumber != nil && now.CRLNumber.Cmp(number) >= 0, CrlNumber: now.crlNumber}, nil
}

// refuseOffer logs a refused offer (rate-limited) and returns its error
// (nil for codes.OK).
func (s *Server) refuseOffer(code codes.Code, who, why string) error {
	if ok, quiet := s.offers.logRefusal(); ok {
		s.log.Warn("CRL or trust state offer refused; this node keeps its own", "caller", who, "code", code.String(), "reason", why, "refusalsNotLogged", quiet)
	}
	if code == codes.OK {
		return nil
	}
	return status.Error(code, why)
}

// installCRL serves with crl (verified against the current trust and taken
// by the rule) from the next handshake and call on, and keeps it in the
// config file, so a reload or the next refresh holds it too. It runs
// between refreshes (s.state), and checks the rule again against what the
// node holds then.
func (s *Server) installCRL(ctx context.Context, crl []byte, who string) error {
	select {
	case s.state <- struct{}{}:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-s.state }()
	cur := s.tls.cur.Load()
	if err := certs.TakeOfferedCRL(cur.CRLPEM, crl, cur.CAList); err != nil {
		return nil // a refresh took as new or newer meanwhile
	}
	creds, err := cur.withCRL(string(crl))
	if err != nil {
		return status.Error(codes.InvalidArgument, err.Error())
	}
	if s.opts.ConfigPath != "" {
		if err := writeConfigCRL(s.opts.ConfigPath, cur, string(crl)); err != nil {
			// Served anyway: refusing it would leave the node enforcing
			// less than it verified.
			s.log.Error("CRL taken from a caller but not kept in the config file; the next refresh takes it from the store", "err", err)
		}
	}
	s.tls.set(creds)
	s.log.Info("CRL taken from a caller", "caller", who, "crlNumber", creds.CRLNumber.String(),
		"previousNumber", numberText(cur), "revoked", len(creds.Revoked))
	return nil
}

func numberText(c *Credentials) string {
	if c.CRLNumber == nil {
		return "none"
	}
	return c.CRLNumber.String()
}

// writeConfigCRL puts crl into the config file at path when it holds the
// trust cur serves with (otherwise a reload of the file is due anyway and
// the refresh brings the CRL).
func writeConfigCRL(path string, cur *Credentials, crl string) error {
	return writeConfigTrust(path, cur, cur.caCertPEM, crl, cur.trustRaw)
}
