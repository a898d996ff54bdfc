package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"time"
)

// Revocation reasons (RFC 5280 5.3.1) joblet accepts by name.
var RevocationReasons = map[string]int{"unspecified": 0, "keyCompromise": 1, "cACompromise": 2,
	"affiliationChanged": 3, "superseded": 4, "cessationOfOperation": 5}

// NewCRL signs a CRL listing entries, numbered number. It stays valid as
// long as the CA: joblet re-signs it on every change and nodes refresh it,
// so an expiring CRL would only add a way to fail.
func (ca *CA) NewCRL(entries []x509.RevocationListEntry, number *big.Int, now time.Time) ([]byte, error) {
	tmpl := &x509.RevocationList{
		RevokedCertificateEntries: entries,
		Number:                    number,
		ThisUpdate:                now,
		NextUpdate:                ca.Cert.NotAfter,
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("sign CRL: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

// ParseCRL parses a PEM CRL and checks it was signed by one of cas.
func ParseCRL(data []byte, cas []*x509.Certificate) (*x509.RevocationList, error) {
	crl, err := ParseCRLUnverified(data)
	if err != nil {
		return nil, err
	}
	for _, ca := range cas {
		if crl.CheckSignatureFrom(ca) == nil {
			return crl, nil
		}
	}
	return nil, errors.New("the CRL is not signed by a trusted CA")
}

// RevokedSerials is the set of serials a CRL lists.
func RevokedSerials(crl *x509.RevocationList) map[string]bool {
	out := map[string]bool{}
	if crl == nil {
		return out
	}
	for _, e := range crl.RevokedCertificateEntries {
		out[e.SerialNumber.Text(16)] = true
	}
	return out
}

// ErrRevoked is returned for a certificate a CRL lists.
var ErrRevoked = errors.New("certificate revoked")

// CheckNotRevoked returns ErrRevoked (with the serial) if revoked lists cert.
func CheckNotRevoked(cert *x509.Certificate, revoked map[string]bool) error {
	if revoked[cert.SerialNumber.Text(16)] {
		return fmt.Errorf("%w: %q, serial %s", ErrRevoked, cert.Subject.CommonName, SerialHex(cert.SerialNumber))
	}
	return nil
}

// CheckChainsNotRevoked refuses verified chains (leaf first, trust anchor
// last) in which revoked lists any certificate but the anchor: a revoked
// intermediate (a node-issuing CA, a rotation's cross certificate) takes
// down everything under it, not only its own serial.
func CheckChainsNotRevoked(chains [][]*x509.Certificate, revoked map[string]bool) error {
	if len(revoked) == 0 {
		return nil
	}
	for _, chain := range chains {
		for i, c := range chain {
			if i == len(chain)-1 && i > 0 {
				break // the anchor: trusted, not revocable by its own CRL
			}
			if err := CheckNotRevoked(c, revoked); err != nil {
				if i > 0 {
					return fmt.Errorf("%w (a CA in the chain of %q)", err, chain[0].Subject.CommonName)
				}
				return err
			}
		}
	}
	return nil
}

// ParseSerial reads a serial in hex (as joblet and openssl print it, with or
// without colons).
func ParseSerial(s string) (*big.Int, error) {
	clean := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != ':' {
			clean = append(clean, s[i])
		}
	}
	n, ok := new(big.Int).SetString(string(clean), 16)
	if !ok || n.Sign() <= 0 {
		return nil, fmt.Errorf("serial %q is not a positive hex number", s)
	}
	return n, nil
}

// ReasonName is the RFC 5280 name of a revocation reason code
// ("reason 4" is superseded), or "reason N" for a code it does not define.
func ReasonName(code int) string {
	for name, c := range RevocationReasons {
		if c == code {
			return name
		}
	}
	return fmt.Sprintf("reason %d", code)
}

// CRLNumber reads a PEM CRL's number without checking its signature: for a
// CRL verified when it was taken, or to number a replacement after it.
func CRLNumber(data []byte) (*big.Int, error) {
	crl, err := ParseCRLUnverified(data)
	if err != nil {
		return nil, err
	}
	return crl.Number, nil
}

// ParseCRLUnverified parses a PEM CRL without checking its signature: only
// for one that was verified when it was taken.
func ParseCRLUnverified(data []byte) (*x509.RevocationList, error) {
	block, _ := pem.Decode(data)
	if block == nil || block.Type != "X509 CRL" {
		return nil, errors.New("not a PEM X509 CRL")
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CRL: %w", err)
	}
	return crl, nil
}
