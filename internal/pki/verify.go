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

// VerifyLeaf checks that leaf chains to one of roots for usage at now,
// through intermediates if given (a server's node-issuing CA).
func VerifyLeaf(leaf *x509.Certificate, roots []*x509.Certificate, usage x509.ExtKeyUsage, now time.Time, intermediates ...*x509.Certificate) error {
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	for _, c := range intermediates {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	if err != nil {
		return fmt.Errorf("certificate %q does not verify against the CA: %w", leaf.Subject.CommonName, err)
	}
	return nil
}

// CheckNodeCA reports why cert cannot serve as the node-issuing CA under
// root at now, or nil: a CA signed by root, limited to serverAuth and to
// leaves (pathlen 0). A node-issuing CA without these limits would let a
// node's key sign a client certificate: it is refused, not used.
func CheckNodeCA(cert, root *x509.Certificate, now time.Time) error {
	if err := CheckCA(cert, now); err != nil {
		return err
	}
	if err := cert.CheckSignatureFrom(root); err != nil {
		return fmt.Errorf("the node-issuing CA is not signed by the fleet's CA (%s): %w", Fingerprint(root), err)
	}
	if !cert.MaxPathLenZero || cert.MaxPathLen != 0 {
		return errors.New("the node-issuing CA may sign other CAs (no pathlen 0)")
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth || len(cert.UnknownExtKeyUsage) != 0 {
		return errors.New("the node-issuing CA is not limited to server authentication (extended key usage must be serverAuth only)")
	}
	return nil
}

// ParseChain parses a certificate followed by the CAs that issued it (a
// server's certificate and its node-issuing CA), leaf first.
func ParseChain(data []byte) (leaf *x509.Certificate, intermediates []*x509.Certificate, err error) {
	certs, err := ParseCerts(data)
	if err != nil {
		return nil, nil, err
	}
	return certs[0], certs[1:], nil
}

// ParseLeaf parses the first certificate of a chain (a server's
// certificate, followed by the CA that issued it).
func ParseLeaf(data []byte) (*x509.Certificate, error) {
	leaf, _, err := ParseChain(data)
	return leaf, err
}
