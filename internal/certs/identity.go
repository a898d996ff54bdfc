package certs

// The identity policy (internal/idpolicy) in the store: signed by the
// root with `joblet certs identity-policy sign`, kept by nodes like the
// trust state: a node takes the store's only when a root it trusts signed
// it and it is not older than the one it holds; a deletion, a forged or an
// older policy changes nothing it accepts.

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

// DefaultPolicyLifetime is how long a signed identity policy is valid: a
// node holding an expired one accepts no person, so it is signed again on
// the schedule that signs the trust state.
const DefaultPolicyLifetime = 30 * 24 * time.Hour

// identityPolicy is the policy a node keeps after a read (held: the one in
// its config), and why the store's was not taken ("" when it was, or
// there is none).
func (s *state) identityPolicy(held string, roots []*x509.Certificate) (string, string) {
	name := s.n.IdentityPolicy()
	stored := s.vals[name]
	if stored == "" || stored == held {
		return held, ""
	}
	var heldPol *idpolicy.Policy
	if held != "" {
		heldPol, _ = idpolicy.Open([]byte(held), roots)
	}
	// A policy older than the signed trust state names was replaced by
	// the root: keep none rather than it (a node then accepts no person).
	if heldPol != nil && s.doc != nil && heldPol.Version < s.doc.MinIdentityPolicy {
		held, heldPol = "", nil
	}
	pol, err := idpolicy.Verify([]byte(stored), s.n.Prefix, roots, heldPol, s.now)
	if err == nil {
		err = s.policyCurrent(pol)
	}
	if err != nil {
		return held, fmt.Sprintf("%s: %v: ignored; keeping the identity policy this node holds", name, err)
	}
	return stored, ""
}

// policyCurrent refuses a policy older than the one the signed trust state
// names: an older policy put back without the root key.
func (s *state) policyCurrent(pol *idpolicy.Policy) error {
	if s.doc != nil && pol.Version < s.doc.MinIdentityPolicy {
		return fmt.Errorf("version %d is older than the version %d the signed trust state names (put back without the root key?): `joblet certs identity-policy sign` signs the current one again", pol.Version, s.doc.MinIdentityPolicy)
	}
	return nil
}

// minIdentityPolicy is the identity policy version a new trust state
// names: the stored policy's when one of roots signed it, never below the
// held state's.
func (s *state) minIdentityPolicy(roots []*x509.Certificate) uint64 {
	var v uint64
	if s.doc != nil {
		v = s.doc.MinIdentityPolicy
	}
	if pol, err := idpolicy.Open([]byte(s.vals[s.n.IdentityPolicy()]), roots); err == nil && pol.Version > v {
		v = pol.Version
	}
	return v
}

// IdentityPolicyResult says what `joblet certs identity-policy sign` did.
type IdentityPolicyResult struct {
	Version uint64 `json:"version"`
	Rules   int    `json:"rules"`
	Expires string `json:"expires"`
}

// SignIdentityPolicy signs pol (its rules, deny list, machines and refused
// shared roles; the rest is set here) with the root and writes it: the
// fleet's prefix, a version above the stored one's and the clock's, valid
// for lifetime.
func (fl *Fleet) SignIdentityPolicy(ctx context.Context, pol *idpolicy.Policy, lifetime time.Duration) (*IdentityPolicyResult, error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{bothKeys: true})
	if err != nil {
		return nil, err
	}
	if err := s.trusted(); err != nil {
		return nil, err
	}
	root, err := s.signer(ctx, &f)
	if err != nil {
		return nil, err
	}
	if lifetime <= 0 {
		lifetime = DefaultPolicyLifetime
	}
	now := f.Now()
	next := *pol
	next.Fleet, next.Issued, next.Expires = f.Prefix, now.UTC().Truncate(time.Second), now.Add(lifetime).UTC().Truncate(time.Second)
	next.Version = uint64(now.Unix())
	if cur, err := idpolicy.Open([]byte(s.vals[s.n.IdentityPolicy()]), s.trust); err == nil && cur.Version >= next.Version {
		next.Version = cur.Version + 1
	}
	data, err := idpolicy.Sign(ctx, &next, root)
	if err != nil {
		return nil, err
	}
	if err := putOrCreate(ctx, f.Store, s.n, s.n.IdentityPolicy(), string(data)); err != nil {
		return nil, fmt.Errorf("write the identity policy (%s): %w", s.n.IdentityPolicy(), err)
	}
	// The trust state names it, so no reader takes an older one again.
	if s.doc != nil {
		s.vals[s.n.IdentityPolicy()] = string(data)
		if err := f.resignTrust(ctx, s, root, s.trust, nil); err != nil {
			return nil, fmt.Errorf("the identity policy is written; naming it in the signed trust state failed (run this again): %w", err)
		}
	}
	return &IdentityPolicyResult{Version: next.Version, Rules: len(next.Rules), Expires: next.Expires.Format(time.RFC3339)}, nil
}

// IdentityPolicy reads the stored policy, verified from the trusted roots.
func (fl *Fleet) IdentityPolicy(ctx context.Context) (*idpolicy.Policy, error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{})
	if err != nil {
		return nil, err
	}
	raw := s.vals[s.n.IdentityPolicy()]
	if raw == "" {
		return nil, fmt.Errorf("the fleet has no identity policy (%s): `joblet certs identity-policy sign --file POLICY.json` makes one", s.n.IdentityPolicy())
	}
	return idpolicy.Verify([]byte(raw), f.Prefix, s.trust, nil, f.Now())
}

// resignIdentityPolicy signs the stored identity policy (raw, verified
// from trust) again with ca, the CA a rotation step made current, one
// version up and otherwise the same: nodes and the issuer keep accepting it
// once the old root is retired. A policy already signed by ca, none, or
// one that does not verify (status says so) is left as it is. It returns
// the policy now stored.
func (f *Fleet) resignIdentityPolicy(ctx context.Context, n Names, raw string, trust []*x509.Certificate, ca *pki.CA) (string, error) {
	if raw == "" {
		return raw, nil
	}
	if _, err := idpolicy.Open([]byte(raw), []*x509.Certificate{ca.Cert}); err == nil {
		return raw, nil
	}
	pol, err := idpolicy.Open([]byte(raw), trust)
	if err != nil {
		return raw, nil
	}
	pol.Version++
	data, err := idpolicy.Sign(ctx, pol, ca)
	if err != nil {
		return raw, fmt.Errorf("sign the identity policy with the new root: %w", err)
	}
	return string(data), putOrCreate(ctx, f.Store, n, n.IdentityPolicy(), string(data))
}
