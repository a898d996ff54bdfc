package certs

// The user-issuing CA (issue 26): the root signs it once (`joblet certs
// user-ca`), the issuer (`joblet issuer`, or its Lambda function) signs
// people's short-lived certificates with it. Its certificate and key sit in
// one secret only the issuer's IAM policy reads: a node, a job or a client
// never sees it, and a stolen node holds nothing that signs a person.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

// DefaultUserCALifetime is the user-issuing CA's lifetime: people's
// certificates live hours, so it is re-made (`user-ca --rotate`) yearly
// without anyone noticing.
const DefaultUserCALifetime = 365 * 24 * time.Hour

// UserCAResult says what `joblet certs user-ca` made.
type UserCAResult struct {
	Serial  string `json:"serial"`
	Expires string `json:"expires"`
	// Replaced is the serial of the user-issuing CA this one replaced
	// ("" for the first): certificates it issued stay valid until they
	// expire (hours), or until revoked.
	Replaced string `json:"replaced,omitempty"`
}

// ErrUserCAExists: the fleet has a user-issuing CA and the operator did
// not ask for a new one.
var ErrUserCAExists = errors.New("the fleet already has a user-issuing CA")

// MakeUserCA signs a new user-issuing CA with the root and stores it with
// its key. An existing one is replaced only with rotate.
func (fl *Fleet) MakeUserCA(ctx context.Context, rotate bool, lifetime time.Duration, kt pki.KeyType) (*UserCAResult, error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{bothKeys: true, userCA: true})
	if err != nil {
		return nil, err
	}
	if err := s.trusted(); err != nil {
		return nil, err
	}
	res := &UserCAResult{}
	if cur := s.vals[s.n.UserCA()]; cur != "" {
		if !rotate {
			return nil, fmt.Errorf("%w (%s): `--rotate` makes a new one (people's certificates from the old one keep working until they expire)", ErrUserCAExists, s.n.UserCA())
		}
		if certPEM, _ := pki.SplitPEM([]byte(cur)); certPEM != nil {
			if c, err := pki.ParseCert(certPEM); err == nil {
				res.Replaced = pki.SerialHex(c.SerialNumber)
			}
		}
	}
	root, err := s.signer(ctx, &f)
	if err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		lifetime = DefaultUserCALifetime
	}
	value, cert, err := mintUserCA(root, kt, f.Now(), lifetime)
	if err != nil {
		return nil, err
	}
	if err := putOrCreate(ctx, f.Store, s.n, s.n.UserCA(), value); err != nil {
		return nil, err
	}
	res.Serial, res.Expires = pki.SerialHex(cert.SerialNumber), cert.NotAfter.UTC().Format(time.RFC3339)
	return res, nil
}

// mintUserCA is a new user-issuing CA from root: the value of
// <prefix>/user-ca (its certificate, then its key) and the certificate.
func mintUserCA(root *pki.CA, kt pki.KeyType, now time.Time, lifetime time.Duration) (string, *x509.Certificate, error) {
	key, err := pki.GenerateKey(kt, nil)
	if err != nil {
		return "", nil, err
	}
	is, err := root.IssueUserCA(key.Public(), now, lifetime)
	if err != nil {
		return "", nil, err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return "", nil, err
	}
	return string(pki.EncodeCert(is.Cert)) + string(keyPEM), is.Cert, nil
}

// IssuerMaterial is what the issuer signs with and checks against, as one
// read of the store found it.
type IssuerMaterial struct {
	CA     *pki.CA
	Policy *idpolicy.Policy
	// Trust is what nodes and clients trust (PEM); TrustState the signed
	// state it comes from ("" for a fleet from before it).
	Trust, TrustState string
}

// IssuerMaterial reads the user-issuing CA and the identity policy. Both
// must come from a root the store's trust lists: the CA's certificate
// chains to it, the policy is signed by it. The issuer trusts nothing
// else; nodes hold every certificate to their own policy anyway.
func (fl *Fleet) IssuerMaterial(ctx context.Context) (*IssuerMaterial, error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{userCA: true})
	if err != nil {
		return nil, err
	}
	// With a pin, the trust is what verifies from the pinned root alone
	// (checkPin), not a state the store's ca-cert signed that merely lists
	// the pinned root beside another.
	if err := checkPin(f.Pin, s); err != nil {
		return nil, fmt.Errorf("%w: nothing issued", err)
	}
	if s.caErr != nil {
		return nil, s.caErr
	}
	if s.trustErr != nil {
		return nil, s.trustErr
	}
	raw := s.vals[s.n.UserCA()]
	if raw == "" {
		return nil, fmt.Errorf("the fleet has no user-issuing CA (%s): an operator makes one with `joblet certs user-ca`", s.n.UserCA())
	}
	ca, err := userCAFrom(raw, s.trust, s.now)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: make it again with `joblet certs user-ca --rotate`", s.n.UserCA(), err)
	}
	polRaw := s.vals[s.n.IdentityPolicy()]
	if polRaw == "" {
		return nil, fmt.Errorf("the fleet has no identity policy (%s): `joblet certs identity-policy sign --file POLICY.json` makes one", s.n.IdentityPolicy())
	}
	pol, err := idpolicy.Verify([]byte(polRaw), f.Prefix, s.trust, nil, s.now)
	if err == nil {
		err = s.policyCurrent(pol)
	}
	if err != nil {
		return nil, fmt.Errorf("the identity policy (%s): %w", s.n.IdentityPolicy(), err)
	}
	return &IssuerMaterial{CA: ca, Policy: pol, Trust: s.trustPEM(), TrustState: s.docRaw}, nil
}

// userCAFrom is the user-issuing CA in raw (<prefix>/user-ca: its
// certificate and key), only when the key is the certificate's and the
// certificate is a user-issuing CA chaining to one of roots: the one check
// of that secret, for the issuer and for a rotation's re-issue.
func userCAFrom(raw string, roots []*x509.Certificate, now time.Time) (*pki.CA, error) {
	certPEM, keyPEM := pki.SplitPEM([]byte(raw))
	cert, err := pki.ParseCert(certPEM)
	if err != nil {
		return nil, err
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, err
	}
	if err := pki.MatchesKey(cert, key); err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		return nil, fmt.Errorf("it does not chain to a root the fleet trusts (%v)", err)
	}
	if !pki.IsUserCA(cert) || !cert.MaxPathLenZero {
		return nil, fmt.Errorf("it is not a user-issuing CA (%q)", cert.Subject.CommonName)
	}
	return &pki.CA{Cert: cert, Key: key}, nil
}

// reissueUserCA gives the user-issuing CA, when the fleet has one, a
// certificate from ca (the CA a rotation step made current) for the same
// key and until the same time, so people's logins keep working after the
// old root is retired. The issuer's policy may be the only one that reads
// <prefix>/user-ca: a read refused leaves it, and says so.
func (f *Fleet) reissueUserCA(ctx context.Context, n Names, trust []*x509.Certificate, ca *pki.CA) error {
	vals, err := f.Store.Get(ctx, []string{n.UserCA()})
	if err != nil || vals[n.UserCA()] == "" {
		if err != nil && f.Log != nil {
			f.Log.Warn("the user-issuing CA could not be read to re-issue it under the new root: run `joblet certs user-ca --rotate` after the rotation", "err", err)
		}
		return nil
	}
	// Only the user-issuing CA the fleet's roots certified: a key planted
	// by a write without the root key is never certified.
	cur, err := userCAFrom(vals[n.UserCA()], trust, f.Now())
	if err != nil || cur.Cert.CheckSignatureFrom(ca.Cert) == nil {
		return nil // junk (status and the issuer say so), or already under ca
	}
	key := cur.Key
	is, err := ca.IssueUserCA(key.Public(), f.Now(), cur.Cert.NotAfter.Sub(f.Now()))
	if err != nil {
		return fmt.Errorf("re-issue the user-issuing CA under the new root: %w", err)
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return err
	}
	return putOrCreate(ctx, f.Store, n, n.UserCA(), string(pki.EncodeCert(is.Cert))+string(keyPEM))
}
