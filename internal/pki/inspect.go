package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"
	"time"
)

// Fingerprint is the SHA-256 of the certificate's DER, in lower-case hex, as
// `openssl x509 -fingerprint -sha256` shows it (without the colons).
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SerialHex is a serial number in hex with an even number of digits, as
// openssl prints it (big.Int.Text(16) drops a leading zero: 31 digits for a
// 16-byte serial that starts with 0x0_). ParseSerial reads both forms.
func SerialHex(n *big.Int) string {
	s := n.Text(16)
	if len(s)%2 == 1 {
		s = "0" + s
	}
	return s
}

// KeyIDHex formats a key identifier as openssl does: hex bytes joined by colons.
func KeyIDHex(b []byte) string {
	var sb strings.Builder
	for i, x := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x", x)
	}
	return sb.String()
}

// KeyTypeOf is the KeyType of a private key, so a renewal keeps the kind of
// key it replaces.
func KeyTypeOf(k any) KeyType {
	if rk, ok := k.(*rsa.PrivateKey); ok {
		if rk.N.BitLen() > 2048 {
			return RSA4096
		}
		return RSA2048
	}
	if _, ok := k.(*ecdsa.PrivateKey); ok {
		return ECDSAP256
	}
	return ECDSAP256
}

// SameCertSet reports whether the PEM bundle holds exactly certs, in any order.
func SameCertSet(bundle string, certs []*x509.Certificate) bool {
	have, err := ParseCerts([]byte(bundle))
	if err != nil || len(have) != len(certs) {
		return false
	}
	for _, c := range certs {
		found := false
		for _, h := range have {
			found = found || h.Equal(c)
		}
		if !found {
			return false
		}
	}
	return true
}

// RenewalDue says whether a server certificate needs renewing at now, and
// why: expired, not signed by the current CA, or two thirds of its lifetime
// passed (renewal then has the last third to succeed, retrying).
func RenewalDue(cert, current *x509.Certificate, now time.Time) (bool, string) {
	if !now.Before(cert.NotAfter) {
		return true, "it expired on " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	if err := cert.CheckSignatureFrom(current); err != nil {
		return true, "it is not signed by the current CA"
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	if !now.Before(cert.NotBefore.Add(life * 2 / 3)) {
		return true, "two thirds of its lifetime have passed"
	}
	return false, ""
}

// ExpiryText is a certificate's expiry for people: the date, with the time
// (UTC) when it is less than a week from now, where a date alone would hide
// whether it expires this morning or tonight (server certificates live days
// in a fleet, and tests and demos use hours).
func ExpiryText(notAfter, now time.Time) string {
	if notAfter.Sub(now) < 7*24*time.Hour {
		return notAfter.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	return notAfter.UTC().Format("2006-01-02")
}
