package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Revocation is one entry of the CRL, for status and revoke's output.
type Revocation struct {
	Serial    string    `json:"serial"`
	RevokedAt time.Time `json:"revokedAt"`
	Reason    int       `json:"reason"`
}

// Revoke adds serial to the CRL in the store (creating it), signed by the
// current CA. Revoking a serial already listed changes nothing. Nodes refuse
// the certificate after their next refresh, rnx after `rnx config refresh`.
// In KMS mode the CRL is signed through open.
func Revoke(ctx context.Context, st secretstore.Store, prefix string, serial *big.Int, reason int, now time.Time, open KMSOpener) ([]Revocation, error) {
	n := Names{Prefix: prefix}
	vals, err := st.Get(ctx, []string{n.CACert(), n.CAKey(), n.CAKMSKey(), n.Bundle(), n.CRL()})
	if err != nil {
		return nil, fmt.Errorf("read the CA and the CRL: %w", err)
	}
	ca, err := currentCA(ctx, vals, n, open)
	if err != nil {
		return nil, err
	}
	trust, err := trustFrom(vals[n.Bundle()], ca.Cert, n.Bundle())
	if err != nil {
		return nil, err
	}
	var entries []x509.RevocationListEntry
	number := big.NewInt(1)
	if cur := vals[n.CRL()]; cur != "" {
		crl, err := pki.ParseCRL([]byte(cur), trust)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, n.CRL(), err)
		}
		entries = crl.RevokedCertificateEntries
		if crl.Number != nil {
			number = new(big.Int).Add(crl.Number, big.NewInt(1))
		}
		if pki.RevokedSerials(crl)[serial.Text(16)] {
			return revocations(entries), nil
		}
	}
	entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: now, ReasonCode: reason})
	pem, err := ca.NewCRL(entries, number, now)
	if err != nil {
		return nil, err
	}
	if err := putOrCreate(ctx, st, n, n.CRL(), string(pem)); err != nil {
		return nil, err
	}
	return revocations(entries), nil
}

func revocations(entries []x509.RevocationListEntry) []Revocation {
	out := make([]Revocation, len(entries))
	for i, e := range entries {
		out[i] = Revocation{Serial: e.SerialNumber.Text(16), RevokedAt: e.RevocationTime.UTC(), Reason: e.ReasonCode}
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
		return nil, nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, name, err)
	}
	return pki.RevokedSerials(crl), revocations(crl.RevokedCertificateEntries), nil
}
