package pki

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"
)

// caName is the subject of a joblet CA whose key id is ski.
func caName(ski []byte) pkix.Name {
	return pkix.Name{
		Organization:       []string{Organization},
		OrganizationalUnit: []string{"CA"},
		CommonName:         "Joblet-CA",
		SerialNumber:       hex.EncodeToString(ski[:min(8, len(ski))]),
	}
}

// CASubject is the DER subject of the CA whose subject key id is ski, as
// NewCA names it: what a TLS 1.3 server lists among the CAs it accepts
// client certificates from (certificate_authorities) when it trusts that CA.
func CASubject(ski []byte) ([]byte, error) {
	return asn1.Marshal(caName(ski).ToRDNSequence())
}

// ParseKeyIDHex is the inverse of KeyIDHex.
func ParseKeyIDHex(s string) ([]byte, error) {
	return hex.DecodeString(strings.ReplaceAll(s, ":", ""))
}

// CrossSign issues, with by, a second certificate for the CA sub: the same
// subject, key, key id and constraints, issued by by. A chain that ends in
// it verifies against by's certificate, so a verifier that trusts only by
// accepts what sub signs. It expires with the earlier of the two CAs.
// (RFC 5280 section 6.1; the "cross-certificate" of RFC 4949.)
func CrossSign(sub *x509.Certificate, by *CA, now time.Time) (*x509.Certificate, error) {
	if !sub.IsCA || !sub.BasicConstraintsValid {
		return nil, errors.New("cross-sign: the subject is not a CA")
	}
	if !now.Before(by.Cert.NotAfter) {
		return nil, fmt.Errorf("cross-sign: the signing CA expired on %s", by.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if bytes.Equal(sub.RawSubject, by.Cert.RawSubject) {
		// openssl would take it for a self-signed certificate and stop there.
		return nil, errors.New("cross-sign: the two CAs have the same name: rotate to a CA with a name of its own")
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               sub.Subject,
		NotBefore:             later(sub.NotBefore, by.Cert.NotBefore),
		NotAfter:              earlier(sub.NotAfter, by.Cert.NotAfter),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            sub.MaxPathLen,
		MaxPathLenZero:        sub.MaxPathLenZero,
		KeyUsage:              sub.KeyUsage,
		ExtKeyUsage:           sub.ExtKeyUsage,
		SubjectKeyId:          sub.SubjectKeyId,
		AuthorityKeyId:        by.Cert.SubjectKeyId,
	}
	if tmpl.MaxPathLen == 0 && !tmpl.MaxPathLenZero {
		tmpl.MaxPathLen = -1
	}
	return sign(tmpl, by.Cert, sub.PublicKey, by.Key)
}

// IsCrossOf reports whether cross is a certificate for ca's key issued by
// issuer (a CrossSign of ca by issuer).
func IsCrossOf(cross, ca, issuer *x509.Certificate) bool {
	return cross.IsCA && SameKey(cross, ca) && cross.CheckSignatureFrom(issuer) == nil
}

// Anchors reports whether root lets a chain hold below intermediates CA
// certificates under it (its path length constraint, as Go checks it).
func Anchors(root *x509.Certificate, below int) bool {
	return !root.BasicConstraintsValid || root.MaxPathLen < 0 || (root.MaxPathLen == 0 && !root.MaxPathLenZero) || root.MaxPathLen >= below
}

// BridgeChain is the chain to present with leaf so that a verifier trusting
// only old accepts it, while one trusting the CA that signed the top of the
// chain accepts it directly: leaf, its intermediates, then cross when cross
// is that CA cross-signed by old and old allows the length. ok is false
// (and the chain leaf plus intermediates) otherwise.
func BridgeChain(leaf *x509.Certificate, intermediates []*x509.Certificate, cross, old *x509.Certificate) (chain []*x509.Certificate, ok bool) {
	chain = append([]*x509.Certificate{leaf}, intermediates...)
	if cross == nil || old == nil {
		return chain, false
	}
	top := chain[len(chain)-1]
	if top.CheckSignatureFrom(cross) != nil || cross.CheckSignatureFrom(old) != nil || !Anchors(old, len(intermediates)+1) {
		return chain, false
	}
	return append(chain, cross), true
}

// SameKey reports whether two certificates are for the same public key.
func SameKey(a, b *x509.Certificate) bool {
	pa, ok := a.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	return ok && pa.Equal(b.PublicKey)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func earlier(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}
