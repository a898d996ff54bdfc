package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// NodeRefresh says which node config to bring up to date with the store.
type NodeRefresh struct {
	ConfigPath string
	Force      bool // renew the server certificate even if not due
	// Cache, kept by a running node from one refresh to the next, makes a
	// refresh where nothing changed cost one store call (nil: read all).
	Cache *RefreshCache
}

// NodeRefreshResult says what changed.
type NodeRefreshResult struct {
	TrustChanged bool
	Renewed      bool
	Reason       string // why the certificate was renewed
	Serial       string
	NotAfter     time.Time
	Trust        []string // SHA-256 fingerprints of the trusted CAs
	// CRLProblem says why the store's CRL was not taken (missing, rolled
	// back, unverifiable): the node keeps enforcing the CRL it holds, and
	// the caller reports this loudly.
	CRLProblem string
}

// RefreshNode reads the current CA and the trust bundle from the store,
// renews the server certificate when due (or forced) with the same names and
// key type, and rewrites the server config atomically when anything changed.
// On any error nothing is written: the node keeps serving what it has.
// The node's config names the fleet's prefix; it wins over the Fleet's.
func (fl *Fleet) RefreshNode(ctx context.Context, r NodeRefresh) (*NodeRefreshResult, error) {
	cfg, raw, err := config.ReadServer(r.ConfigPath)
	if err != nil {
		return nil, err
	}
	f := fl.defaults()
	if cfg.Store.Prefix != "" {
		f.Prefix = cfg.Store.Prefix
	}
	names := f.names()
	sc := scope{caKey: true, kmsMode: cfg.Security.CAKMSKeyID != ""}
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
	s, err := f.readState(ctx, sc)
	if err != nil {
		return nil, err
	}
	// The CA and the trust must be usable; a CRL problem does not stop the
	// trust changes (a node must never keep a retired CA because of it).
	if s.caErr != nil {
		return nil, s.caErr
	}
	if s.trustErr != nil {
		return nil, s.trustErr
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
	res.CRLProblem = crlProblem
	res.TrustChanged = !pki.SameCertSet(cfg.Security.CACert, trust) || cfg.Security.CRL != crlPEM

	leaf, err := pki.ParseCert([]byte(cfg.Security.ServerCert))
	if err != nil {
		return nil, fmt.Errorf("security.serverCert in %s: %w", r.ConfigPath, err)
	}
	due, reason := pki.RenewalDue(leaf, s.ca, f.Now())
	if pki.CheckNotRevoked(leaf, revoked) != nil {
		due, reason = true, "it was revoked"
	}
	if r.Force {
		due, reason = true, "renewal was requested"
	}
	res.Serial, res.NotAfter = pki.SerialHex(leaf.SerialNumber), leaf.NotAfter
	if due {
		is, err := f.renewServer(ctx, cfg, r.ConfigPath, s, leaf)
		if err != nil {
			return nil, err
		}
		res.Renewed, res.Reason = true, reason
		res.Serial, res.NotAfter = pki.SerialHex(is.SerialNumber), is.NotAfter
	}
	if !res.Renewed && !res.TrustChanged {
		c.remember(before, raw, s.ca, res)
		return res, nil
	}
	cfg.Security.CACert = trustPEM
	cfg.Security.CRL = crlPEM
	b, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(r.ConfigPath, b, 0o600); err != nil {
		return nil, err
	}
	c.remember(before, b, s.ca, res)
	return res, nil
}

// renewServer issues the node a new certificate for the same names, with a
// new key of the same type, signed by the current CA, into cfg.
func (f *Fleet) renewServer(ctx context.Context, cfg *config.Server, path string, s *state, leaf *x509.Certificate) (*x509.Certificate, error) {
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
	signer, kmsID, err := f.nodeSigner(ctx, cfg, s.n, s.ca, s.vals)
	if err != nil {
		return nil, err
	}
	cfg.Security.CAKMSKeyID = kmsID
	ca := pki.CA{Cert: s.ca, Key: signer}
	is, err := ca.IssueServer(key.Public(), pki.SANs{DNS: leaf.DNSNames, IPs: leaf.IPAddresses}, f.Now(), lifetime)
	if err != nil {
		return nil, fmt.Errorf("renew the server certificate: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	cfg.Security.ServerCert, cfg.Security.ServerKey = string(pki.EncodeCert(is.Cert)), string(keyPEM)
	return is.Cert, nil
}

// nodeSigner finds the current CA's key: the stored ca-key, or the KMS key the
// config or the store's ca-kms-key names. During a stage move the CA
// certificate and its key may briefly disagree: the error says so, and the
// next refresh retries.
func (f *Fleet) nodeSigner(ctx context.Context, cfg *config.Server, names Names, caCert *x509.Certificate, vals map[string]string) (crypto.Signer, string, error) {
	if cfg.Security.CAKMSKeyID != "" {
		return caSigner(ctx, caCert, nil, []string{vals[names.CAKMSKey()], cfg.Security.CAKMSKeyID}, f.OpenKMS, names)
	}
	keyPEM := vals[names.CAKey()]
	if key, err := pki.ParseKey([]byte(keyPEM)); err == nil && samePublicKey(caCert, key) {
		return key, "", nil
	}
	// Not the stored key: the fleet may have moved its CA to KMS.
	got, err := f.Store.Get(ctx, []string{names.CAKMSKey()})
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", names.CAKMSKey(), err)
	}
	return caSigner(ctx, caCert, []string{keyPEM}, []string{got[names.CAKMSKey()]}, f.OpenKMS, names)
}
