package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// NodeRefresh says which node config to bring up to date with the store.
type NodeRefresh struct {
	ConfigPath string
	Force      bool // renew the server certificate even if not due
	// Cache, kept by a running node from one refresh to the next, makes a
	// refresh where nothing changed cost one store call (nil: read all).
	Cache *RefreshCache
	// Config and Raw are the node's config as the caller read it from
	// ConfigPath (Raw its bytes), the read it opened the Fleet's store
	// from: the refresh then takes its prefix from that same read, never
	// from a newer one than its store's. nil: read ConfigPath.
	Config *config.Server
	Raw    []byte
}

// NodeRefreshResult says what changed.
type NodeRefreshResult struct {
	TrustChanged bool
	Renewed      bool
	// ChainChanged: the chain served with the certificate changed (a
	// rotation's cross certificate added or dropped, see cross.go).
	ChainChanged bool
	Reason       string // why the certificate was renewed
	Serial       string
	NotAfter     time.Time
	Trust        []string // SHA-256 fingerprints of the trusted CAs
	// CRLProblem says why the store's CRL was not taken (missing, rolled
	// back, unverifiable): the node keeps enforcing the CRL it holds, and
	// the caller reports this loudly.
	CRLProblem string
	// TrustProblem says why the store's trust bundle was not taken (it
	// does not parse): the node keeps the trust it holds, and the caller
	// reports this loudly.
	TrustProblem string
	// RenewProblem says why the certificate could not be renewed (the
	// store's CA or node-issuing CA unusable) although the CRL and trust
	// state were taken: the caller reports it loudly.
	RenewProblem string
}

// RefreshNode reads the current CA and the trust bundle from the store,
// renews the server certificate when due (or forced) with the same names and
// key type, and rewrites the server config atomically when anything changed.
// On any error nothing is written: the node keeps serving what it has.
// The node's config names the fleet's prefix; it wins over the Fleet's.
func (fl *Fleet) RefreshNode(ctx context.Context, r NodeRefresh) (*NodeRefreshResult, error) {
	cfg, raw := r.Config, r.Raw
	if cfg == nil {
		var err error
		if cfg, raw, err = config.ReadServer(r.ConfigPath); err != nil {
			return nil, err
		}
	}
	f := fl.defaults()
	if cfg.Store.Prefix != "" {
		f.Prefix = cfg.Store.Prefix
	}
	names := f.names()
	// A node serving a certificate from the node-issuing CA reads what
	// the node policy allows (nodeScope). One serving a certificate signed
	// by the root itself (a fleet from before the node-issuing CA) also
	// reads the root's key, as before, until the fleet has a node-issuing
	// CA to renew from.
	// Without a rotation's cross certificate (see cross.go): it says
	// nothing about who issued the leaf.
	oldLeaf, chain, err := issuedChain(cfg.Security.ServerCert, cfg.Security.CACert)
	if err != nil {
		return nil, fmt.Errorf("security.serverCert in %s: %w", r.ConfigPath, err)
	}
	rootSigned := len(chain) == 0
	sc := nodeScope
	if rootSigned {
		sc.caKey, sc.key = true, f.kmsKey(cfg.Security.CAKMSKeyID)
	}
	c := r.Cache
	if c == nil {
		c = &RefreshCache{}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	before, unchanged, err := c.check(ctx, &f, sc.names(names), raw, cfg, r.Force)
	if err != nil {
		return nil, err
	}
	if unchanged != nil {
		return unchanged, nil
	}
	s, err := f.readNode(ctx, sc, rootSigned)
	if err != nil {
		return nil, err
	}
	// The CA and the trust must be usable; a CRL problem does not stop the
	// trust changes (a node must never keep a retired CA because of it).
	// A node that holds a signed trust state takes its newer state and CRL
	// even when the store's CA or node-issuing CA is unusable (one write
	// without the root key would otherwise stop every node taking a
	// revocation): only its renewal waits (RenewProblem).
	signedHeld := cfg.Security.TrustState != ""
	var renewErr error
	if s.caErr != nil {
		if !signedHeld {
			return nil, s.caErr
		}
		renewErr = s.caErr
	}
	// Only a trust state signed by a root this node holds changes its
	// trust; anything else in the store is ignored and reported.
	trustProblem, err := s.holdTrust(cfg.Security.CACert, cfg.Security.TrustState, cfg.Security.CRL)
	if err != nil {
		return nil, err
	}
	// Once per process: newer versions put over in the store's history
	// (a node that joined during a rollback took the older one).
	if !c.historyRead {
		c.historyRead = f.newestFromHistory(ctx, s)
	}
	docVal := s.docValue()
	var issuer *pki.CA
	if renewErr == nil {
		if issuer, err = nodeIssuer(s, rootSigned); err != nil {
			if !signedHeld {
				return nil, err
			}
			renewErr = err
		} else if err := s.listedIssuer(issuer); err != nil {
			issuer, renewErr = nil, err
		}
	}
	vals, trust := s.vals, s.trust
	crlPEM, crlProblem := newestCRL(cfg.Security.CRL, vals[names.CRL()], s.crlErr, names.CRL(), s.trust)
	revoked := s.revoked
	if crlPEM != vals[names.CRL()] {
		revoked = revokedSerials(crlPEM)
	}
	res := &NodeRefreshResult{}
	for _, c := range trust {
		res.Trust = append(res.Trust, pki.Fingerprint(c))
	}
	trustPEM := s.trustPEM()
	if gap := crlGap(s.doc, crlPEM); gap != "" {
		crlProblem = strings.TrimPrefix(crlProblem+"; "+gap, "; ")
	}
	polVal, polProblem := s.identityPolicy(cfg.Security.IdentityPolicy, trust)
	res.CRLProblem, res.TrustProblem = crlProblem, strings.TrimPrefix(trustProblem+"; "+polProblem, "; ")
	res.TrustProblem = strings.TrimSuffix(res.TrustProblem, "; ")
	res.TrustChanged = !pki.SameCertSet(cfg.Security.CACert, trust) || cfg.Security.CRL != crlPEM || cfg.Security.TrustState != docVal || cfg.Security.IdentityPolicy != polVal
	if renewErr != nil {
		res.RenewProblem = fmt.Sprintf("%v: the CRL and the trust state were still taken; the server certificate is not renewed until the store is repaired", renewErr)
		leaf := oldLeaf
		res.Serial, res.NotAfter = pki.SerialHex(leaf.SerialNumber), leaf.NotAfter
		if !res.TrustChanged {
			return res, nil
		}
		cfg.Security.CACert, cfg.Security.CRL, cfg.Security.TrustState, cfg.Security.IdentityPolicy = trustPEM, crlPEM, docVal, polVal
		return res, writeServer(r.ConfigPath, cfg)
	}

	leaf := oldLeaf
	issuerCert := s.ca
	if issuer != nil {
		issuerCert = issuer.Cert
	}
	due, reason := pki.RenewalDue(leaf, issuerCert, f.Now())
	switch {
	case issuer != nil && rootSigned:
		due, reason = true, "the fleet has a node-issuing CA to renew from"
	case issuer != nil && !chain[0].Equal(issuer.Cert) && !due:
		// Re-signed by a new root in a rotation step (same key): the
		// chain this node serves must end at the current root.
		due, reason = true, "the node-issuing CA was re-issued"
	}
	if pki.CheckNotRevoked(leaf, revoked) != nil {
		due, reason = true, "it was revoked"
	}
	if r.Force {
		due, reason = true, "renewal was requested"
	}
	res.Serial, res.NotAfter = pki.SerialHex(leaf.SerialNumber), leaf.NotAfter
	if due {
		is, err := f.renewServer(ctx, cfg, r.ConfigPath, s, leaf, issuer)
		if err != nil {
			return nil, err
		}
		res.Renewed, res.Reason = true, reason
		res.Serial, res.NotAfter = pki.SerialHex(is.SerialNumber), is.NotAfter
	}
	chainPEM, err := s.serverChain(cfg.Security.ServerCert)
	if err != nil {
		return nil, fmt.Errorf("security.serverCert in %s: %w", r.ConfigPath, err)
	}
	res.ChainChanged = chainPEM != cfg.Security.ServerCert
	cfg.Security.ServerCert = chainPEM
	if !res.Renewed && !res.TrustChanged && !res.ChainChanged {
		c.remember(before, raw, issuerCert, res)
		return res, nil
	}
	cfg.Security.CACert = trustPEM
	cfg.Security.CRL = crlPEM
	cfg.Security.TrustState = docVal
	cfg.Security.IdentityPolicy = polVal
	b, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(r.ConfigPath, b, 0o600); err != nil {
		return nil, err
	}
	c.remember(before, b, issuerCert, res)
	return res, nil
}

// writeServer writes cfg to path, atomically.
func writeServer(path string, cfg *config.Server) error {
	b, err := cfg.Marshal()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o600)
}

// readNode reads what a node refresh needs with sc. A node still serving a
// certificate signed by the root may run under the node policy from before
// the node-issuing CA (no node-CA access) or, once the operator tightened
// it, the new one (no root key): a read refused for access is tried again
// with what each of those allows.
func (f *Fleet) readNode(ctx context.Context, sc scope, rootSigned bool) (*state, error) {
	s, err := f.readState(ctx, sc)
	if !rootSigned || !errors.Is(err, secretstore.ErrAccessDenied) {
		return s, err
	}
	for _, alt := range []scope{nodeScope, sc.asBefore13()} {
		if s, aerr := f.readState(ctx, alt); aerr == nil {
			return s, nil
		}
	}
	return nil, err
}

// nodeIssuer is the CA a node renews its server certificate from: the
// fleet's node-issuing CA, or nil for the root itself in a fleet from
// before it (a node serving a certificate from a node-issuing CA never
// goes back to the root).
func nodeIssuer(s *state, rootSigned bool) (*pki.CA, error) {
	switch {
	case s.nodeCAErr != nil:
		return nil, s.nodeCAErr
	case s.nodeCA != nil:
		return s.nodeCA, nil
	case !rootSigned:
		return nil, fmt.Errorf("%w: this node's certificate comes from a node-issuing CA, but the store has none (%s): restore its previous version, or re-create it with `joblet certs node-ca`",
			ErrInconsistentStore, s.n.NodeCACert())
	}
	return nil, nil
}

// renewServer issues the node a new certificate for the same names, with a
// new key of the same type, into cfg: signed by issuer (the node-issuing
// CA), or by the root when issuer is nil (a fleet from before it).
func (f *Fleet) renewServer(ctx context.Context, cfg *config.Server, path string, s *state, leaf *x509.Certificate, issuer *pki.CA) (*x509.Certificate, error) {
	_, lifetime, err := cfg.Durations()
	if err != nil {
		return nil, err
	}
	oldKey, err := pki.ParseKey([]byte(cfg.Security.ServerKey))
	if err != nil {
		return nil, fmt.Errorf("security.serverKey in %s: %w", path, err)
	}
	key, err := pki.GenerateKey(pki.KeyTypeOf(oldKey), nil)
	if err != nil {
		return nil, err
	}
	if issuer == nil {
		signer, kmsID, err := f.nodeSigner(ctx, cfg, s)
		if err != nil {
			return nil, err
		}
		cfg.Security.CAKMSKeyID = kmsID
		issuer = &pki.CA{Cert: s.ca, Key: signer}
	}
	is, err := issuer.IssueServer(key.Public(), pki.SANs{DNS: leaf.DNSNames, IPs: leaf.IPAddresses}, f.Now(), lifetime)
	if err != nil {
		return nil, fmt.Errorf("renew the server certificate: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	cfg.Security.ServerCert, cfg.Security.ServerKey = serverChainPEM(is.Cert, issuer, s.ca), string(keyPEM)
	return is.Cert, nil
}

// nodeSigner finds the current CA's key: the stored ca-key, or the KMS key the
// config or the store's ca-kms-key names. During a stage move the CA
// certificate and its key may briefly disagree: the error says so, and the
// next refresh retries.
func (f *Fleet) nodeSigner(ctx context.Context, cfg *config.Server, s *state) (crypto.Signer, string, error) {
	if given := f.kmsKey(cfg.Security.CAKMSKeyID); given.InKMS() {
		return f.caSigner(ctx, s.ca, nil, []CAKeyRef{s.caKey, given})
	}
	keyPEM := s.vals[s.n.CAKey()]
	if key, err := pki.ParseKey([]byte(keyPEM)); err == nil && samePublicKey(s.ca, key) {
		return key, "", nil
	}
	// Not the stored key: the fleet may have moved its CA to KMS.
	ref, err := f.readKMSRef(ctx)
	if err != nil {
		return nil, "", err
	}
	return f.caSigner(ctx, s.ca, []string{keyPEM}, []CAKeyRef{ref})
}

// listedIssuer refuses a node-issuing CA that the signed trust state the
// node holds does not list although it existed when that state was signed:
// clients refuse a certificate from it (a pair restored after a re-key, or
// planted). One issued after the state is a re-key the node has not seen
// the listing of yet: it is listed before it is written.
// The same rule as rnx's (pki.TrustState.AllowsNodeCA): by key, since
// a rotation re-signs the same key under the new root.
func (s *state) listedIssuer(issuer *pki.CA) error {
	if issuer == nil || s.doc == nil || s.doc.AllowsNodeCA(issuer.Cert) {
		return nil
	}
	return fmt.Errorf("%w: the node-issuing CA in %s (serial %s) is not listed by the signed trust state (version %d) although it predates it: clients refuse certificates from it. An operator runs `joblet certs node-ca --rekey`",
		ErrInconsistentStore, s.n.NodeCACert(), pki.SerialHex(issuer.Cert.SerialNumber), s.doc.Version)
}
