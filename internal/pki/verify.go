package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"time"
)

// ErrKeyMismatch means a certificate and a private key are not a pair.
var ErrKeyMismatch = errors.New("certificate does not match private key")

// MatchesKey reports whether cert is the certificate of key.
func MatchesKey(cert *x509.Certificate, key crypto.Signer) error {
	pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(key.Public()) {
		return ErrKeyMismatch
	}
	return nil
}

// CheckCA reports why cert cannot serve as joblet's CA at now, or nil.
func CheckCA(cert *x509.Certificate, now time.Time) error {
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q is not a CA (no basicConstraints CA:TRUE)", cert.Subject.CommonName)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return fmt.Errorf("CA %q may not sign certificates (keyUsage lacks keyCertSign)", cert.Subject.CommonName)
	}
	return CheckValidity(cert, now)
}

// CheckValidity reports an error if cert is outside its validity window.
func CheckValidity(cert *x509.Certificate, now time.Time) error {
	if now.After(cert.NotAfter) {
		return fmt.Errorf("certificate %q expired on %s", cert.Subject.CommonName, cert.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(cert.NotBefore) {
		return fmt.Errorf("certificate %q is not valid before %s (check the clock)", cert.Subject.CommonName, cert.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// VerifyLeaf checks that leaf chains to one of roots for usage at now.
func VerifyLeaf(leaf *x509.Certificate, roots []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time) error {
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("certificate %q does not verify against the CA: %w", leaf.Subject.CommonName, err)
	}
	return nil
}
