package certs

import (
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/ehsaniara/joblet/internal/pki"
)

// unusableBundle is a ca-bundle secret that does not parse. Whoever can
// write that one secret, without the root key, must not be able to stall
// revocations or every node's refresh with it: a revoke needs only the
// root key and the CRL, and a node keeps the trust it holds. Flows that
// change trust (a rotation, a join) still refuse it and say how to repair.
type unusableBundle struct{ error }

func (e unusableBundle) Unwrap() error { return e.error }

// ignoreUnusableBundle makes s trust the current CA alone when the only
// thing wrong with its trust is an unusable bundle, so the CRL (which the
// current CA signs) is read and can be re-signed; problem says what was
// ignored (empty when nothing was).
func (s *state) ignoreUnusableBundle() (problem string) {
	var ub unusableBundle
	if s.ca == nil || !errors.As(s.trustErr, &ub) {
		return ""
	}
	s.useTrust([]*x509.Certificate{s.ca})
	return fmt.Sprintf("%v: ignored; revoking with the current CA (%s) alone", ub.error, pki.Fingerprint(s.ca))
}

// keepHeldTrust lets a node's refresh go on past an unusable bundle with
// the trust the node already holds (heldPEM): nothing in the store then
// changes whom it trusts, its CRL is still taken (verified against what it
// trusts) and its certificate still renewed. Any other trust error is
// returned as it is.
func (s *state) keepHeldTrust(heldPEM string) (problem string, err error) {
	var ub unusableBundle
	if s.ca == nil || !errors.As(s.trustErr, &ub) {
		return "", s.trustErr
	}
	held, perr := pki.ParseCerts([]byte(heldPEM))
	if perr != nil || len(held) == 0 {
		return "", s.trustErr
	}
	s.useTrust(held)
	return fmt.Sprintf("%v: ignored; this node keeps the %d CA(s) it trusts", ub.error, len(held)), nil
}

// useTrust replaces the trust the state read and what depends on it.
func (s *state) useTrust(trust []*x509.Certificate) {
	s.trust, s.trustErr = trust, nil
	s.revoked, s.revs, s.crlErr = map[string]bool{}, nil, nil
	if r, revs, err := revokedIn(s.vals[s.n.CRL()], s.trust, s.n.CRL()); err != nil {
		s.crlErr = err
	} else {
		s.revoked, s.revs = r, revs
	}
	s.parseIssuer()
}
