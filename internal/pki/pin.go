package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"strings"
)

// Pin is a root certificate's SHA-256 fingerprint (of its DER bytes), as
// a joining machine is given it out of band: kubeadm's and step-ca's way
// of making a first contact with a store trust what the operator meant.
type Pin [sha256.Size]byte

// PinOf is c's pin.
func PinOf(c *x509.Certificate) Pin { return sha256.Sum256(c.Raw) }

// Matches reports whether c is the pinned certificate.
func (p Pin) Matches(c *x509.Certificate) bool { return c != nil && PinOf(c) == p }

// String is the form `certs init` prints and ParsePin reads back.
func (p Pin) String() string { return "sha256:" + hex.EncodeToString(p[:]) }

// ParsePin reads a fingerprint in the forms operators paste: 64 hex digits,
// or 32 colon-separated pairs (openssl's), in any case, optionally after
// "sha256:" or openssl's "sha256 Fingerprint=" (any case), surrounding
// blanks ignored. Anything else, a SHA-1 fingerprint included, is refused
// naming the form expected.
func ParsePin(s string) (Pin, error) {
	var p Pin
	v := strings.TrimSpace(s)
	lower := strings.ToLower(v)
	for _, prefix := range []string{"sha256 fingerprint=", "sha256:"} {
		if strings.HasPrefix(lower, prefix) {
			v = strings.TrimSpace(v[len(prefix):])
			break
		}
	}
	digits := v
	if strings.Contains(v, ":") {
		parts := strings.Split(v, ":")
		for _, part := range parts {
			if len(part) != 2 {
				return p, fmt.Errorf("fingerprint %q: colons must separate every pair of hex digits; give the root certificate's SHA-256 fingerprint (64 hex digits, colons optional, `sha256:` optional), as `joblet certs init` prints it", s)
			}
		}
		digits = strings.Join(parts, "")
	}
	b, err := hex.DecodeString(digits)
	if err != nil || len(b) != sha256.Size {
		return p, fmt.Errorf("fingerprint %q: want the root certificate's SHA-256 fingerprint, 64 hex digits (colons optional, `sha256:` optional), as `joblet certs init` prints it", s)
	}
	copy(p[:], b)
	return p, nil
}
