package certs

import (
	"context"
	"crypto/x509"
	"fmt"

	"github.com/ehsaniara/joblet/internal/pki"
)

// A rotation keeps configs made before it working until `finish`, and lets
// one refresh anywhere between `begin` and `finish` be enough:
//
//   - `begin` stores, next to the pending CA, that CA cross-signed by the
//     current one (ca-cross) and, for every role, a pending client
//     certificate from the pending CA for the role's key.
//   - Whoever presents a certificate of the new CA (a node from `promote`
//     on, a refreshed client from `begin` on) presents it with its
//     intermediates and then the cross certificate, as long as the CA that
//     signed the cross is trusted (the trust bundle holds it until
//     `finish`): a peer that trusts only the old CA verifies the chain up to
//     it, one that trusts the new CA verifies the certificate directly.
//   - `rnx config refresh` in the begun phase hands out the pending client
//     certificate with that chain, so the config works with nodes that
//     still trust only the old CA, with every node after `promote`, and
//     after `finish` (its trust holds both CAs, its certificate is the new
//     CA's).
//
// The old CA must allow the chain's length under it (pki.Anchors): a CA made
// before CAs had no path length limit cannot anchor the cross certificate,
// and the rotation then works as before it (see docs/ROTATION.md).

// bridge is chain with the cross certificate appended when it bridges the
// top of chain to a CA the store trusts.
func (s *state) bridge(chain []*x509.Certificate) []*x509.Certificate {
	for _, old := range s.trust {
		if out, ok := pki.BridgeChain(chain[0], chain[1:], s.cross, old); ok {
			return out
		}
	}
	return chain
}

// crossFor says whether the store's cross certificate is ca's, signed by
// a trusted CA that can anchor it under a chain with inter intermediates.
func (s *state) crossFor(ca *x509.Certificate, inter int) bool {
	if s.cross == nil || ca == nil {
		return false
	}
	for _, old := range s.trust {
		if pki.IsCrossOf(s.cross, ca, old) && pki.Anchors(old, inter+1) {
			return true
		}
	}
	return false
}

// withoutBridge drops from a presented chain (leaf first) what a refresh
// appended: everything from the first certificate for the key of a CA in
// trust (a cross certificate). What a node's issuer put there stays.
func withoutBridge(chain []*x509.Certificate, trust []*x509.Certificate) []*x509.Certificate {
	for i, c := range chain[1:] {
		for _, t := range trust {
			if pki.SameKey(t, c) {
				return chain[:i+1]
			}
		}
	}
	return chain
}

// serverChain is the PEM chain a node serves for the chain it holds: the
// same leaf and intermediates, with the cross certificate when it bridges.
func (s *state) serverChain(certPEM string) (string, error) {
	certs, err := pki.ParseCerts([]byte(certPEM))
	if err != nil {
		return "", err
	}
	return string(pki.EncodeCerts(s.bridge(withoutBridge(certs, s.trust))...)), nil
}

// pendingCA is the pending CA certificate read, or nil.
func (s *state) pendingCA() *x509.Certificate {
	c, err := pki.ParseCert([]byte(s.pending[s.n.CACert()]))
	if err != nil {
		return nil
	}
	return c
}

// pendingClient is the role's pending client certificate when it is from
// ca for the role's current key, or nil.
func (s *state) pendingClient(role pki.Role, ca *x509.Certificate) *x509.Certificate {
	c, err := pki.ParseCert([]byte(s.pending[s.n.ClientCert(role)]))
	if err != nil || ca == nil || c.CheckSignatureFrom(ca) != nil {
		return nil
	}
	if cur := s.clients[role]; cur == nil || !pki.SameKey(cur, c) {
		return nil
	}
	return c
}

// clientMaterial is the client certificate chain (PEM) and key a config of
// role gets now: from the begun phase on, the new CA's certificate with the
// cross certificate, when the store has them; otherwise the current one.
func (s *state) clientMaterial(role pki.Role) (certPEM, keyPEM string, err error) {
	n := s.n
	cur, err := parsePair(s.vals[n.ClientCert(role)], s.vals[n.ClientKey(role)], n.ClientCert(role), n.ClientKey(role))
	if err != nil {
		return "", "", err
	}
	leaf := cur.Cert
	if s.phase == PhaseBegun {
		if p := s.pendingClient(role, s.pendingCA()); p != nil && s.crossFor(s.pendingCA(), 0) {
			leaf = p
		}
	}
	return string(pki.EncodeCerts(s.bridge([]*x509.Certificate{leaf})...)), s.vals[n.ClientKey(role)], nil
}

// begunComplete says whether every write of a begin is there: the pending
// CA in the trust bundle and, when the current CA can anchor the cross
// certificate, the cross certificate and the pending certificate of each
// role read.
func (s *state) begunComplete(roles []pki.Role) bool {
	next := s.pendingCA()
	if next == nil || s.ca == nil {
		return false
	}
	trusted := false
	for _, t := range s.trust {
		trusted = trusted || t.Equal(next)
	}
	if !trusted {
		return false
	}
	if !bridgeable(s.ca, next) {
		return true
	}
	if s.cross == nil || !pki.IsCrossOf(s.cross, next, s.ca) {
		return false
	}
	for _, r := range roles {
		if s.clients[r] != nil && !s.revokedRole(r) && s.pendingClient(r, next) == nil {
			return false
		}
	}
	return true
}

// revokedRole: the role's certificate in the store is revoked. A rotation
// keeps each role's key, so it certifies that key again for no role whose
// certificate is revoked (its key may be why): the role waits for `certs
// reissue`, which gives it a new key.
func (s *state) revokedRole(r pki.Role) bool {
	c := s.clients[r]
	return c != nil && s.revoked[c.SerialNumber.Text(16)]
}

func (f *Fleet) warnRevokedRole(s *state, r pki.Role) {
	f.Log.Warn("a revoked role certificate: this rotation step does not certify its key again; re-issue the role with a new key (`joblet certs reissue --role "+string(r)+"`), then `rnx config refresh`",
		"role", r, "serial", pki.SerialHex(s.clients[r].SerialNumber))
}

// bridgeable says whether old can cross-sign next for configs made before a
// rotation: old allows one CA under it and the two have names of their own.
func bridgeable(old, next *x509.Certificate) bool {
	return pki.Anchors(old, 1) && string(old.RawSubject) != string(next.RawSubject)
}

// prepareBridge makes the writes of a begin that come after the pending CA:
// the cross certificate of next by the current CA, then each role's
// pending certificate from next. Each is written only when the store does
// not hold a usable one, so a re-run after a crash completes what is
// missing and two operators end with usable values.
func (f *Fleet) prepareBridge(ctx context.Context, r *rotation, next *pki.CA) error {
	n := r.n
	if !bridgeable(r.current.Cert, next.Cert) {
		f.Log.Warn("the current CA cannot anchor a cross certificate (made with a path length limit, or with the new CA's name): configs made before this rotation need a refresh before promote",
			"currentCA", pki.Fingerprint(r.current.Cert))
		return nil
	}
	if r.cross == nil || !pki.IsCrossOf(r.cross, next.Cert, r.current.Cert) || pki.CheckValidity(r.cross, f.Now()) != nil || r.revoked[r.cross.SerialNumber.Text(16)] {
		cross, err := pki.CrossSign(next.Cert, r.current, f.Now())
		if err != nil {
			return fmt.Errorf("cross-sign the new CA with the current one: %w", err)
		}
		if err := putOrCreate(ctx, f.Store, n, n.CACross(), string(pki.EncodeCert(cross))); err != nil {
			return err
		}
		r.cross = cross // the link the trust state's lineage records
	}
	for _, role := range pki.Roles {
		if r.pendingClient(role, next.Cert) != nil {
			continue
		}
		if r.revokedRole(role) {
			f.warnRevokedRole(r.state, role)
			continue
		}
		if err := f.issueClient(ctx, r, role, next, f.Store.PutPending); err != nil {
			return err
		}
	}
	return nil
}

// issuedChain parses a node's served chain (leaf first) without the cross
// certificate a refresh appended: the leaf and the intermediates its issuer
// gave it. trustPEM is the node's trust, which held the CA of the cross
// certificate when it was appended.
func issuedChain(chainPEM, trustPEM string) (*x509.Certificate, []*x509.Certificate, error) {
	certs, err := pki.ParseCerts([]byte(chainPEM))
	if err != nil {
		return nil, nil, err
	}
	trust, _ := pki.ParseCerts([]byte(trustPEM))
	certs = withoutBridge(certs, trust)
	return certs[0], certs[1:], nil
}
