package certs

import (
	"crypto/x509"
	"fmt"
	"math/big"

	"github.com/ehsaniara/joblet/internal/pki"
)

// A CRL is signed by the fleet's root, so it does not matter who carries it
// to a node: the operator's revoke pushing it, or any client that holds a
// newer one than the node (internal/server/offer.go). The node takes it by
// the same rule as from the store (acceptCRL).

// ErrCRLNotNewer refuses an offered CRL numbered at or below the held one:
// found from the number alone, before any signature is checked.
var ErrCRLNotNewer = fmt.Errorf("the offered CRL is not newer than the one this node holds")

// OfferedCRLNewer is the cheap first check of an offered CRL: it reads
// the CRL's number without parsing its entries or verifying it, with ErrCRLNotNewer
// when that is not above held's (nil: none held). An attacker replaying old
// CRLs is answered here, at no signature's cost.
func OfferedCRLNewer(held *big.Int, offered []byte) (*big.Int, error) {
	n, err := pki.PeekCRLNumber(offered)
	if err != nil {
		return nil, fmt.Errorf("the offered CRL does not parse: %w", err)
	}
	if n == nil {
		return nil, fmt.Errorf("the offered CRL has no number: refused (a fleet's CRLs are numbered)")
	}
	if held != nil && n.Cmp(held) <= 0 {
		return n, fmt.Errorf("%w (offered number %s, held %s)", ErrCRLNotNewer, numText(n), numText(held))
	}
	return n, nil
}

// TakeOfferedCRL verifies an offered CRL against trust (the CAs the party
// trusts, nothing the carrier names) and applies acceptCRL against held,
// the CRL the party holds ("" for none). nil means offered replaces held;
// otherwise the error says why it was refused.
func TakeOfferedCRL(held string, offered []byte, trust []*x509.Certificate) error {
	if _, err := pki.ParseCRL(offered, trust); err != nil {
		return fmt.Errorf("the offered CRL does not verify against this node's trusted CAs: %w", err)
	}
	o := acceptCRL(held, string(offered), trust)
	switch {
	case o.rolledBack, o.sameNumber:
		return fmt.Errorf("%w (offered number %s, held %s)", ErrCRLNotNewer, numText(o.offered), numText(o.held))
	case len(o.dropped) > 0:
		return fmt.Errorf("the offered CRL (number %s) no longer lists %v, which the held CRL revokes: refused", numText(o.offered), o.dropped)
	}
	return nil
}
