// Package pki is the pure crypto of joblet: keys, the CA, server and client
// certificates, SANs, PEM and verification, on standard-library types only.
// Nothing here touches files, the network or the clock: callers pass `now`.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"fmt"
	"io"
	"strings"
)

// KeyType names a supported private key algorithm.
type KeyType string

const (
	ECDSAP256 KeyType = "ecdsa-p256"
	RSA2048   KeyType = "rsa-2048"
	RSA4096   KeyType = "rsa-4096"
)

// KeyTypes lists the supported key types, default first.
var KeyTypes = []KeyType{ECDSAP256, RSA2048, RSA4096}

// ParseKeyType accepts the names of KeyTypes.
func ParseKeyType(s string) (KeyType, error) {
	for _, k := range KeyTypes {
		if string(k) == s {
			return k, nil
		}
	}
	names := make([]string, len(KeyTypes))
	for i, k := range KeyTypes {
		names[i] = string(k)
	}
	return "", fmt.Errorf("unknown key type %q: use one of %s", s, strings.Join(names, ", "))
}

// GenerateKey makes a new private key of type kt, reading randomness from r
// (crypto/rand.Reader when r is nil).
func GenerateKey(kt KeyType, r io.Reader) (crypto.Signer, error) {
	if r == nil {
		r = rand.Reader
	}
	switch kt {
	case ECDSAP256:
		return ecdsa.GenerateKey(elliptic.P256(), r)
	case RSA2048:
		return rsa.GenerateKey(r, 2048)
	case RSA4096:
		return rsa.GenerateKey(r, 4096)
	}
	_, err := ParseKeyType(string(kt))
	return nil, err
}
