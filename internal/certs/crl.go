package certs

import (
	"crypto/x509"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

// Revocation only moves forward: a party (a node, an rnx config) keeps the
// newest CRL it has verified. Whoever can write the one CRL secret could
// otherwise un-revoke fleet-wide, with no signing right, by deleting it or
// putting an older version back.

// nextCRLNumber is the number of the CRL that replaces one numbered n: above
// n, and at least the current Unix time, so a CRL re-created after the
// stored one was lost still sorts after every CRL a node holds (RFC 5280
// 5.2.3: CRL numbers only increase).
func nextCRLNumber(n *big.Int, now time.Time) *big.Int {
	next := big.NewInt(now.Unix())
	if n != nil && n.Cmp(next) >= 0 {
		next = new(big.Int).Add(n, big.NewInt(1))
	}
	return next
}

// crlOffer is what acceptCRL found comparing an offered CRL with the one
// a party holds.
type crlOffer struct {
	held, offered *big.Int // their numbers (nil: none)
	// rolledBack: offered is numbered below held, or not at all while
	// held is; sameNumber: another CRL with held's number.
	rolledBack, sameNumber bool
	// dropped are serials held lists and offered does not, while a CA
	// still trusted signed held (a rollback, then a revoke on top of it).
	dropped []string
}

// taken reports whether the offered CRL may replace the held one.
func (o crlOffer) taken() bool { return !o.rolledBack && !o.sameNumber && len(o.dropped) == 0 }

// acceptCRL is the one rule by which a CRL replaces the one a party holds
// (a node's refresh, an rnx config learning from a node, a revoke merging
// the version its read replaced): the offered CRL, verified by the caller
// against the party's trust, is taken when it is numbered above the held
// one and lists every serial the held one lists (while held's CA is
// trusted). The same CRL again is taken (nothing changes); "" offered is a
// CRL without a number. held "" takes anything verified.
func acceptCRL(held, offered string, trust []*x509.Certificate) crlOffer {
	var o crlOffer
	if held == "" || held == offered {
		return o
	}
	o.held, _ = pki.CRLNumber([]byte(held))
	if offered != "" {
		o.offered, _ = pki.CRLNumber([]byte(offered))
	}
	switch {
	case o.held != nil && (o.offered == nil || o.offered.Cmp(o.held) < 0):
		o.rolledBack = true
	case o.held != nil && o.offered.Cmp(o.held) == 0:
		o.sameNumber = true
	default:
		o.dropped = droppedSerials(held, offered, trust)
	}
	return o
}

// newestCRL chooses the CRL to keep between the one a party holds (held,
// verified when it took it) and the store's (stored, with storedErr when it
// did not verify against the store's trust), by acceptCRL. problem, when
// not empty, says loudly why the store's CRL was not taken: it is missing,
// older, unverifiable, or newer but without a serial the held one lists
// while the CA that signed the held one is still trusted (a rollback
// followed by a revoke), and the party keeps enforcing what it had.
func newestCRL(held, stored string, storedErr error, name string, trust []*x509.Certificate) (keep, problem string) {
	if held == "" {
		return stored, ""
	}
	switch o := acceptCRL(held, stored, trust); {
	case storedErr != nil:
		heldNum, _ := pki.CRLNumber([]byte(held))
		return held, fmt.Sprintf("%v: keeping the CRL this party holds (number %s) until the store holds one it can verify", storedErr, numText(heldNum))
	case stored == "":
		return held, fmt.Sprintf("%s is missing from the store, but this party holds CRL number %s: keeping it, so nothing is un-revoked. "+
			"Restore the secret's previous version (or re-run `joblet certs revoke` for each serial)", name, numText(o.held))
	case o.rolledBack:
		return held, fmt.Sprintf("%s was rolled back: the store holds CRL number %s, this party holds the newer number %s; keeping the newer one. "+
			"Find who wrote the secret, and restore its newest version", name, numText(o.offered), numText(o.held))
	case o.sameNumber:
		return held, fmt.Sprintf("%s holds another CRL with the same number %s as the one this party holds: keeping this party's", name, numText(o.held))
	case len(o.dropped) > 0:
		return held, fmt.Sprintf("%s (number %s) no longer lists %s, which the CRL this party holds revokes: keeping this party's. "+
			"Someone put back an older CRL and revoked on top of it: revoke %s again (`joblet certs revoke --serial`)",
			name, numText(o.offered), strings.Join(o.dropped, ", "), strings.Join(o.dropped, ", "))
	}
	return stored, ""
}

// droppedSerials are the serials held lists and stored does not, when a
// CA still in trust signed held (a retired CA's revocations go with it).
func droppedSerials(held, stored string, trust []*x509.Certificate) []string {
	h, err := pki.ParseCRLUnverified([]byte(held))
	if err != nil {
		return nil
	}
	signedByTrusted := false
	for _, c := range trust {
		signedByTrusted = signedByTrusted || h.CheckSignatureFrom(c) == nil
	}
	if !signedByTrusted {
		return nil
	}
	now := revokedSerials(stored)
	var out []string
	for _, e := range h.RevokedCertificateEntries {
		if !now[e.SerialNumber.Text(16)] {
			out = append(out, pki.SerialHex(e.SerialNumber))
		}
	}
	return out
}

// numText is how a CRL number is written for people: decimal, or
// "(none)". (Between rnx and a node it travels as pb.FormatCRLNumber.)
func numText(n *big.Int) string {
	if n == nil {
		return "(none)"
	}
	return n.String()
}

// revokedSerials lists what a held CRL (verified when it was taken)
// revokes; nothing for "" or one that no longer parses.
func revokedSerials(pemText string) map[string]bool {
	crl, err := pki.ParseCRLUnverified([]byte(pemText))
	if err != nil {
		return map[string]bool{}
	}
	return pki.RevokedSerials(crl)
}
