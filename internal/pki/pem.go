package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
)

// EncodeCert returns the PEM form of cert.
func EncodeCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

// EncodeCerts concatenates the PEM forms: a trust bundle.
func EncodeCerts(certs ...*x509.Certificate) []byte {
	var b bytes.Buffer
	for _, c := range certs {
		b.Write(EncodeCert(c))
	}
	return b.Bytes()
}

// EncodeKey returns the PKCS#8 PEM form of key.
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseCert parses exactly one PEM certificate.
func ParseCert(data []byte) (*x509.Certificate, error) {
	certs, err := ParseCerts(data)
	if err != nil {
		return nil, err
	}
	if len(certs) != 1 {
		return nil, fmt.Errorf("expected one certificate, found %d", len(certs))
	}
	return certs[0], nil
}

// ParseCerts parses a bundle of one or more PEM certificates. Anything that
// is not a CERTIFICATE block is an error, so a key pasted by mistake into a
// certificate field does not pass unnoticed.
func ParseCerts(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := bytes.TrimSpace(data)
	for len(rest) > 0 {
		block, r := pem.Decode(rest)
		if block == nil {
			return nil, errors.New("not PEM: expected -----BEGIN CERTIFICATE-----")
		}
		if block.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("found a PEM %q block where a CERTIFICATE was expected", block.Type)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		certs = append(certs, c)
		rest = bytes.TrimSpace(r)
	}
	if len(certs) == 0 {
		return nil, errors.New("no certificate found (empty input)")
	}
	return certs, nil
}

// ParseKey parses one PEM private key: PKCS#8, or the older PKCS#1 (RSA) and
// SEC 1 (EC) forms that openssl and shell tooling write.
func ParseKey(data []byte) (crypto.Signer, error) {
	block, rest := pem.Decode(bytes.TrimSpace(data))
	if block == nil {
		return nil, errors.New("not PEM: expected -----BEGIN PRIVATE KEY-----")
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, errors.New("unexpected data after the private key")
	}
	var key any
	var err error
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("found a PEM %q block where a private key was expected", block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		return k, nil
	case *rsa.PrivateKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported private key type %T: use ECDSA P-256 or RSA", key)
}

// SplitPEM parts PEM data holding certificates and a key (a login's file,
// the user-issuing CA's secret) into the CERTIFICATE blocks and the rest.
func SplitPEM(data []byte) (certs, rest []byte) {
	for {
		block, r := pem.Decode(data)
		if block == nil {
			return certs, rest
		}
		if block.Type == "CERTIFICATE" {
			certs = append(certs, pem.EncodeToMemory(block)...)
		} else {
			rest = append(rest, pem.EncodeToMemory(block)...)
		}
		data = r
	}
}
