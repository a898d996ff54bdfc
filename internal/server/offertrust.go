package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

// A trust state, like a CRL, is signed by the fleet's root, so any caller
// may carry it to a node: the operator's command pushing a rotation step or
// a re-key, or rnx. The node checks its size and version before any
// signature, rate-limits the offers, verifies it from the roots of the
// state it holds (never from anything the carrier names) and takes it only
// when newer, exactly as its refresh takes one from the store.

// offer is OfferCRL: the trust state first, when given (it may be what
// makes the offered CRL verifiable: a rotation's finish), then the CRL.
func (s *Server) offer(ctx context.Context, req *pb.OfferCRLRequest) (*pb.OfferCRLResponse, error) {
	var trustTaken bool
	var reason string
	if len(req.TrustState) > 0 {
		taken, why, err := s.offerTrust(ctx, req.TrustState, req.Crl)
		if err != nil {
			return nil, err
		}
		trustTaken, reason = taken, why
	}
	var res *pb.OfferCRLResponse
	if len(req.Crl) > 0 {
		r, err := s.offerCRL(ctx, req)
		if err != nil {
			return nil, err
		}
		res = r
	} else {
		res = &pb.OfferCRLResponse{CrlNumber: s.tls.cur.Load().crlNumber}
	}
	if res.Reason == "" {
		res.Reason = reason
	}
	res.TrustTaken = trustTaken
	if cur := s.tls.cur.Load(); cur.trust != nil {
		res.TrustVersion = cur.trust.Version
	}
	return res, nil
}

// offerTrust takes an offered trust state when it is newer than the one
// held and one of the held roots (or its lineage) signed it; taken says
// whether the node now holds it, why why not when the offer was harmless
// (not newer, or a node without a signed state yet).
func (s *Server) offerTrust(ctx context.Context, data, crl []byte) (taken bool, why string, err error) {
	id, who := caller(ctx)
	cur := s.tls.cur.Load()
	if len(data) > pki.MaxTrustSize {
		s.metrics.crlOffers.WithLabelValues("refused").Inc()
		return false, "", s.refuseOffer(codes.InvalidArgument, who, fmt.Sprintf("the offered trust state is %d bytes, above the %d a node takes", len(data), pki.MaxTrustSize))
	}
	if cur.trust == nil {
		return false, "this node holds no signed trust state yet: it takes one from the store at its next refresh", nil
	}
	if string(data) == cur.trustRaw {
		return true, "", nil
	}
	// The version alone, certificates unparsed: parsing a state's
	// certificates costs more than checking a signature, so only an offer
	// that passed the rate limit pays for it (VerifyTrust).
	version, err := pki.PeekTrustVersion(data, cur.trust.Fleet)
	if err != nil {
		s.metrics.crlOffers.WithLabelValues("refused").Inc()
		return false, "", s.refuseOffer(codes.InvalidArgument, who, "the offered trust state: "+err.Error())
	}
	if version <= cur.trust.Version {
		why := fmt.Sprintf("the offered trust state (version %d) is not newer than this node's (%d)", version, cur.trust.Version)
		s.metrics.crlOffers.WithLabelValues("not_newer").Inc()
		s.refuseOffer(codes.OK, who, why)
		return false, why, nil
	}
	if !s.offers.allow(id) {
		s.metrics.crlOffers.WithLabelValues("rate_limited").Inc()
		return false, "", s.refuseOffer(codes.ResourceExhausted, who, "too many offers: retry in a second")
	}
	if t, err := pki.VerifyTrust(data, cur.trust.Fleet, cur.trust.RootCerts(), cur.trust, cur.Revoked); err != nil || t.AheadOf(time.Now()) != "" {
		if err == nil {
			err = fmt.Errorf("%w: %s", pki.ErrTrustRollback, t.AheadOf(time.Now()))
		}
		s.metrics.crlOffers.WithLabelValues("refused").Inc()
		return false, "", s.refuseOffer(codes.InvalidArgument, who, err.Error())
	}
	if err := s.installTrust(ctx, data, crl, who); err != nil {
		return false, "", err
	}
	s.metrics.crlOffers.WithLabelValues("taken").Inc()
	return true, "", nil
}

// installTrust serves with the offered trust state (and the offered CRL
// when it is newer and verifies under it) from the next handshake and call
// on, and keeps both in the config file. It runs between refreshes
// (s.state) and verifies again against what the node holds then.
func (s *Server) installTrust(ctx context.Context, data, crl []byte, who string) error {
	select {
	case s.state <- struct{}{}:
	case <-ctx.Done():
		return status.FromContextError(ctx.Err()).Err()
	}
	defer func() { <-s.state }()
	cur := s.tls.cur.Load()
	if cur.trust == nil {
		return nil
	}
	t, err := pki.VerifyTrust(data, cur.trust.Fleet, cur.trust.RootCerts(), cur.trust, cur.Revoked)
	if err != nil || t.Version <= cur.trust.Version {
		return nil // a refresh took as new or newer meanwhile
	}
	roots := t.RootCerts()
	crlPEM := cur.CRLPEM
	if len(crl) > 0 && certs.TakeOfferedCRL(cur.CRLPEM, crl, roots) == nil {
		crlPEM = string(crl)
	}
	caPEM := string(pki.EncodeCerts(roots...))
	creds, err := newCredentials(cur.Cert, roots, caPEM, crlPEM)
	if err != nil {
		return status.Error(codes.FailedPrecondition, fmt.Sprintf("the offered trust state (version %d) does not verify this node's CRL (%v): offer the CRL its roots signed with it", t.Version, err))
	}
	creds.holdTrust(t, string(data))
	// The identity policy stays, while a root of the new state signed it
	// and the state names no newer one.
	if cur.personsRaw != "" {
		if pol, err := idpolicy.Open([]byte(cur.personsRaw), roots); err == nil && pol.Version >= t.MinIdentityPolicy {
			creds.persons, creds.personsRaw = pol, cur.personsRaw
		}
	}
	if s.opts.ConfigPath != "" {
		if err := writeConfigTrust(s.opts.ConfigPath, cur, caPEM, crlPEM, string(data)); err != nil {
			s.log.Error("trust state taken from a caller but not kept in the config file; the next refresh takes it from the store", "err", err)
		}
	}
	s.tls.set(creds)
	s.log.Info("trust state taken from a caller", "caller", who, "version", t.Version, "previousVersion", cur.trust.Version, "trustedCAs", len(roots))
	if crlPEM != cur.CRLPEM {
		s.log.Info("CRL taken from a caller", "caller", who, "crlNumber", creds.CRLNumber.String(),
			"previousNumber", numberText(cur), "revoked", len(creds.Revoked))
	}
	if gap := creds.CRLGap(); gap != "" {
		s.log.Error("refusing every call", "reason", gap)
	}
	return nil
}

// writeConfigTrust puts the trust, the CRL and the trust state into the
// config file at path when it holds what cur serves with.
func writeConfigTrust(path string, cur *Credentials, caPEM, crl, trust string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	cfg, err := config.LoadServer(path)
	if err != nil {
		return err
	}
	if cfg.Security.CACert != cur.caCertPEM || cfg.Security.CRL != cur.CRLPEM {
		return fmt.Errorf("%s changed since it was loaded: not rewritten", path)
	}
	cfg.Security.CACert, cfg.Security.CRL, cfg.Security.TrustState = caPEM, crl, trust
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, fi.Mode().Perm())
}
