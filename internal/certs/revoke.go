package certs

import (
	"context"
	"crypto/x509"
	"math/big"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
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
// the certificate after their next refresh, rnx after `rnx config refresh`.
// In KMS mode the CRL is signed through the Fleet's OpenKMS.
func (fl *Fleet) Revoke(ctx context.Context, serial *big.Int, reason int) ([]Revocation, error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{bothKeys: true})
	if err != nil {
		return nil, err
	}
	n, vals, now := s.n, s.vals, f.Now()
	ca, err := s.signer(ctx, f.OpenKMS)
	if err != nil {
		return nil, err
	}
	if s.trustErr != nil {
		return nil, s.trustErr
	}
	var entries []x509.RevocationListEntry
	number := big.NewInt(1)
	if cur := vals[n.CRL()]; cur != "" {
		crl, err := pki.ParseCRL([]byte(cur), s.trust)
		if err != nil {
			return nil, inconsistent(n.CRL(), err)
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
	if err := putOrCreate(ctx, f.Store, n, n.CRL(), string(pem)); err != nil {
		return nil, err
	}
	return revocations(entries), nil
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
