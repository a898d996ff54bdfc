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

// newestCRL chooses the CRL to keep between the one a party holds (held,
// verified when it took it) and the store's (stored, with storedErr when it
// did not verify against the store's trust). problem, when not empty, says
// loudly why the store's CRL was not taken: it is missing, older,
// unverifiable, or newer but without a serial the held one lists while the
// CA that signed the held one is still trusted (a rollback followed by a
// revoke), and the party keeps enforcing what it had.
func newestCRL(held, stored string, storedErr error, name string, trust []*x509.Certificate) (keep, problem string) {
	if held == "" {
		return stored, ""
	}
	heldNum, _ := pki.CRLNumber([]byte(held))
	switch {
	case storedErr != nil:
		return held, fmt.Sprintf("%v: keeping the CRL this party holds (number %s) until the store holds one it can verify", storedErr, numText(heldNum))
	case stored == "":
		return held, fmt.Sprintf("%s is missing from the store, but this party holds CRL number %s: keeping it, so nothing is un-revoked. "+
			"Restore the secret's previous version (or re-run `joblet certs revoke` for each serial)", name, numText(heldNum))
	}
	storedNum, _ := pki.CRLNumber([]byte(stored))
	if heldNum != nil && (storedNum == nil || storedNum.Cmp(heldNum) < 0) {
		return held, fmt.Sprintf("%s was rolled back: the store holds CRL number %s, this party holds the newer number %s; keeping the newer one. "+
			"Find who wrote the secret, and restore its newest version", name, numText(storedNum), numText(heldNum))
	}
	if storedNum != nil && heldNum != nil && storedNum.Cmp(heldNum) == 0 && stored != held {
		return held, fmt.Sprintf("%s holds another CRL with the same number %s as the one this party holds: keeping this party's", name, numText(heldNum))
	}
	if dropped := droppedSerials(held, stored, trust); len(dropped) > 0 {
		return held, fmt.Sprintf("%s (number %s) no longer lists %s, which the CRL this party holds revokes: keeping this party's. "+
			"Someone put back an older CRL and revoked on top of it: revoke %s again (`joblet certs revoke --serial`)",
			name, numText(storedNum), strings.Join(dropped, ", "), strings.Join(dropped, ", "))
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
