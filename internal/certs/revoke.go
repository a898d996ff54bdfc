package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	mathrand "math/rand/v2"
	"slices"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Revocation is one entry of the CRL, for status and revoke's output.
type Revocation struct {
	Serial    string    `json:"serial"`
	RevokedAt time.Time `json:"revokedAt"`
	Reason    int       `json:"reason"`
	// ReasonName is the RFC 5280 name of Reason (keyCompromise, ...).
	ReasonName string `json:"reasonName"`
}

// Revoke adds serial to the CRL in the store (creating it), signed by the
// current CA. Revoking a serial already listed changes nothing. Nodes refuse
// the certificate after their next refresh (open connections included); rnx
// on its next command to a node that refreshed, or after `rnx config
// refresh`. In KMS mode the CRL is signed through the Fleet's OpenKMS.
//
// Writing a secret is last-writer-wins, so a revoke running at the same
// time can replace the CRL with one built from what it read before this
// one wrote: Revoke reads back after a short pause and writes again until
// its serial stays listed.
func (fl *Fleet) Revoke(ctx context.Context, serial *big.Int, reason int) ([]Revocation, error) {
	f := fl.defaults()
	settle := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		list, err := f.revokeOnce(ctx, serial, reason)
		if err != nil {
			return nil, err
		}
		// A random, growing pause: writers that collided once do not
		// collide again in step.
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(settle/2 + time.Duration(mathrand.Int64N(int64(settle)))):
		}
		settle = min(settle*3/2, time.Second)
		s, err := f.readState(ctx, scope{})
		if err != nil {
			return nil, err
		}
		s.ignoreUnusableBundle()
		if s.crlErr == nil && s.revoked[serial.Text(16)] {
			return list, nil
		}
		if attempt == 30 {
			return nil, fmt.Errorf("serial %s was written to %s but another writer kept replacing the CRL without it: run the revoke again", pki.SerialHex(serial), s.n.CRL())
		}
	}
}

// revokeOnce writes the CRL with serial added, unless it is listed.
func (f *Fleet) revokeOnce(ctx context.Context, serial *big.Int, reason int) ([]Revocation, error) {
	s, err := f.readState(ctx, scope{bothKeys: true, previousCRL: true})
	if err != nil {
		return nil, err
	}
	n, vals, now := s.n, s.vals, f.Now()
	ca, err := s.signer(ctx, f)
	if err != nil {
		return nil, err
	}
	if problem := s.ignoreUnusableBundle(); problem != "" {
		f.Log.Warn("the store's trust bundle is unusable", "problem", problem)
	}
	if s.trustErr != nil {
		return nil, s.trustErr
	}
	var entries []x509.RevocationListEntry
	var number *big.Int
	// A current CRL that no trusted CA signed (junk, or written without the
	// root key) is read as none: the versions it replaced (below) give the
	// revocations and the number, and the one written next replaces it. It
	// must never stop a revocation.
	if cur := vals[n.CRL()]; cur != "" {
		if crl, err := pki.ParseCRL([]byte(cur), s.trust); err != nil {
			f.Log.Warn("the store's CRL does not verify: revoking from its previous versions", "secret", n.CRL(), "error", err)
		} else {
			entries, number = crl.RevokedCertificateEntries, crl.Number
		}
	}
	// The version the current one replaced, when it verifies, is held to
	// the rule every party applies (acceptCRL): where the current version
	// could not replace it (a rollback put back an older CRL; or two
	// revokes read one version and wrote the same next number, the last
	// write hiding the other's serial), its entries are merged back.
	// Revocations only move forward, so the union of two CRLs the trusted
	// CAs signed is always right.
	if prev := s.previousCRL; prev != "" {
		if old, err := pki.ParseCRL([]byte(prev), s.trust); err == nil && old.Number != nil {
			if o := acceptCRL(prev, vals[n.CRL()], s.trust); !o.taken() {
				if o.rolledBack {
					f.Log.Warn("the store's CRL is older than the version it replaced: merging that version's revocations back", "secret", n.CRL(), "current", numText(number), "previous", numText(old.Number))
					number = old.Number
				}
				entries = mergeEntries(entries, old.RevokedCertificateEntries)
			}
		}
	}
	// The same for every version in the secret's history that is not
	// older than the newest verified one (an older CRL put back twice
	// makes the previous version the older one too).
	if h, ok := f.Store.(secretstore.Historian); ok && vals[n.CRL()] != "" {
		newest, _, seen, err := crlHistory(ctx, h, n.CRL(), s.trust)
		if err != nil {
			return nil, err
		}
		for _, c := range seen {
			entries = mergeEntries(entries, c.RevokedCertificateEntries)
		}
		if newest != nil && (number == nil || newest.Number.Cmp(number) > 0) {
			f.Log.Warn("the store's CRL is older than one in its history: merging the newer one's revocations back", "secret", n.CRL(), "current", numText(number), "newest", numText(newest.Number))
			number = newest.Number
		}
	}
	// Listed in the current CRL: nothing to write. Listed only in the
	// version it replaced: written again (merged), or it stays lost.
	if s.revoked[serial.Text(16)] && len(entries) == len(s.revs) {
		return revocations(entries), nil
	}
	if !slices.ContainsFunc(entries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(serial) == 0 }) {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: now, ReasonCode: reason})
	}
	pem, err := ca.NewCRL(entries, nextCRLNumber(number, now), now)
	if err != nil {
		return nil, err
	}
	if err := putOrCreate(ctx, f.Store, n, n.CRL(), string(pem)); err != nil {
		return nil, err
	}
	// The signed trust state names this CRL's number, so a node that
	// never saw it (the CRL secret deleted, say) refuses to serve until
	// it has it. The CRL is written either way: a trust state that cannot
	// be re-signed never holds up a revocation.
	if s.doc != nil {
		s.vals[n.CRL()] = string(pem)
		s.useTrust(s.trust) // what the new CRL revokes, for the node-issuing CAs listed
		if _, err := f.signTrust(ctx, s, ca, s.trust, nil); err != nil {
			f.Log.Warn("the revocation is written, but the trust state could not be re-signed with its CRL number", "error", err)
		}
	}
	return revocations(entries), nil
}

// mergeEntries is a with every entry of b whose serial a lacks.
func mergeEntries(a, b []x509.RevocationListEntry) []x509.RevocationListEntry {
	have := map[string]bool{}
	for _, e := range a {
		have[e.SerialNumber.Text(16)] = true
	}
	for _, e := range b {
		if !have[e.SerialNumber.Text(16)] {
			a = append(a, e)
		}
	}
	return a
}

// resignCRL makes sure the stored CRL (crlPEM, verified against trust) is
// signed by ca, the CA that signs from now on, keeping every entry and
// raising its number. Every rotation step that changes which CA signs calls
// it: once the old CA is no longer trusted, a CRL signed by it could not be
// verified, and nodes would stop refreshing (and keep the retired CA).
func (f *Fleet) resignCRL(ctx context.Context, n Names, crlPEM string, trust []*x509.Certificate, ca *pki.CA) error {
	if crlPEM == "" {
		return nil
	}
	crl, err := pki.ParseCRL([]byte(crlPEM), trust)
	if err != nil {
		return inconsistent(n.CRL(), err)
	}
	if crl.CheckSignatureFrom(ca.Cert) == nil {
		return nil
	}
	pem, err := ca.NewCRL(crl.RevokedCertificateEntries, nextCRLNumber(crl.Number, f.Now()), f.Now())
	if err != nil {
		return err
	}
	return putOrCreate(ctx, f.Store, n, n.CRL(), string(pem))
}

// freshCRL is an empty CRL signed by ca, numbered after the stored one, or
// "" when the fleet has no CRL yet (FORCE_REGENERATE: the new CA revoked
// nothing, and the old CA's certificates are no longer trusted at all).
func (f *Fleet) freshCRL(ctx context.Context, ca *pki.CA) (string, error) {
	s, err := f.readState(ctx, scope{})
	if err != nil {
		return "", err
	}
	stored := s.vals[s.n.CRL()]
	if stored == "" {
		return "", nil
	}
	// Unverified on purpose: only the number is taken, so the new CRL
	// sorts after the old one.
	old, err := pki.CRLNumber([]byte(stored))
	if err != nil {
		old = nil
	}
	pem, err := ca.NewCRL(nil, nextCRLNumber(old, f.Now()), f.Now())
	return string(pem), err
}

func revocations(entries []x509.RevocationListEntry) []Revocation {
	out := make([]Revocation, len(entries))
	for i, e := range entries {
		out[i] = Revocation{Serial: pki.SerialHex(e.SerialNumber), RevokedAt: e.RevocationTime.UTC(), Reason: e.ReasonCode, ReasonName: pki.ReasonName(e.ReasonCode)}
	}
	return out
}

// revokedIn parses a stored CRL ("" for none) against trust.
func revokedIn(crlPEM string, trust []*x509.Certificate, name string) (map[string]bool, []Revocation, error) {
	if crlPEM == "" {
		return map[string]bool{}, nil, nil
	}
	crl, err := pki.ParseCRL([]byte(crlPEM), trust)
	if err != nil {
		return nil, nil, inconsistent(name, err)
	}
	return pki.RevokedSerials(crl), revocations(crl.RevokedCertificateEntries), nil
}

// crlHistory reads the CRL's history, newest created first, and returns
// the newest CRL in it that trust signed (and its PEM) and every verified
// CRL read on the way. Like the trust state's walk (operatortrust.go), it
// stops at a version created before the newest verified one was signed
// (signingSkew).
func crlHistory(ctx context.Context, h secretstore.Historian, name string, trust []*x509.Certificate) (*x509.RevocationList, string, []*x509.RevocationList, error) {
	var newest *x509.RevocationList
	var newestPEM string
	var seen []*x509.RevocationList
	err := h.History(ctx, name, func(v secretstore.Version) bool {
		if newest != nil && v.Created.Before(newest.ThisUpdate.Add(-signingSkew)) {
			return false
		}
		c, err := pki.ParseCRL([]byte(v.Value), trust)
		if err != nil || c.Number == nil {
			return true
		}
		seen = append(seen, c)
		if newest == nil || c.Number.Cmp(newest.Number) > 0 {
			newest, newestPEM = c, v.Value
		}
		return true
	})
	if err != nil {
		return nil, "", nil, fmt.Errorf("read the history of %s (to tell an older CRL put back; the operator's policy, `joblet certs iam-policy --for rotation`, grants secretsmanager:ListSecretVersionIds): %w", name, err)
	}
	return newest, newestPEM, seen, nil
}
