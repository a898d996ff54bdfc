package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"math/big"
	"net"
	"time"
)

// Organization is the O of every certificate joblet issues.
const Organization = "Joblet"

// Default lifetimes follow the spec's rotation advice.
const (
	DefaultCALifetime     = 3 * 365 * 24 * time.Hour
	DefaultClientLifetime = 2 * 365 * 24 * time.Hour
	DefaultServerLifetime = 365 * 24 * time.Hour
	// DefaultFleetServerLifetime is a server certificate's lifetime in a
	// shared store, where a running node renews it on its own at two
	// thirds (after about 4.7 days), so a stolen server key is worth days.
	DefaultFleetServerLifetime = 7 * 24 * time.Hour
)

// backdate absorbs clock skew between the node that signs and the peers that
// verify, as most CAs do: 5 minutes, or a twentieth of a short lifetime so
// that renewal at two thirds of it still means what it says.
func backdate(lifetime time.Duration) time.Duration {
	return min(5*time.Minute, lifetime/20)
}

// CA is a certificate authority able to sign.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// Issued is a freshly signed certificate.
type Issued struct {
	Cert *x509.Certificate
	// Capped is true when the requested lifetime would have outlived the CA,
	// so NotAfter was cut to the CA's NotAfter.
	Capped bool
}

// NewSerial returns a random positive 128-bit serial number (RFC 5280 allows
// up to 20 octets; 128 bits of entropy makes collisions irrelevant).
func NewSerial() (*big.Int, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return nil, fmt.Errorf("serial: %w", err)
	}
	b[0] &= 0x7f // keep it positive in DER
	if b[0] == 0 {
		b[0] = 0x40 // and a full 16 octets long
	}
	return new(big.Int).SetBytes(b), nil
}

// keyID is the RFC 5280 section 4.2.1.2 method 1 key identifier: SHA-1 of the
// subjectPublicKey bits. Go computes the same for a CA on its own; we compute
// it for leaves too so every certificate carries a subject key id.
func keyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	var spki struct {
		Algorithm        pkix.AlgorithmIdentifier
		SubjectPublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("key id: %w", err)
	}
	sum := sha1.Sum(spki.SubjectPublicKey.Bytes)
	return sum[:], nil
}

// NewCA self-signs a CA certificate for key, valid from now for lifetime.
func NewCA(key crypto.Signer, now time.Time, lifetime time.Duration) (*x509.Certificate, error) {
	if lifetime <= 0 {
		return nil, errors.New("CA lifetime must be positive")
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	ski, err := keyID(key.Public())
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		// Each CA's name is its own (the key id in serialNumber): during a
		// rotation two CAs are trusted at once, and verifiers (openssl,
		// TLS 1.3's certificate_authorities) tell issuers apart by name. A
		// cross-signed CA whose name equaled its issuer's would read as
		// self-signed to openssl.
		Subject:               caName(ski),
		NotBefore:             now.Add(-backdate(lifetime)),
		NotAfter:              now.Add(lifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		// No path length limit: the root signs the node-issuing CA (which
		// has pathlen 0) and, in a rotation, its successor is cross-signed
		// by it, so it sits two CAs above a server certificate. A pathlen 0
		// root cannot anchor that: Go counts every intermediate against it
		// (RFC 5280 would exempt a self-issued one; Go does not).
		MaxPathLen:     -1,
		KeyUsage:       x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		SubjectKeyId:   ski,
		AuthorityKeyId: ski,
	}
	return sign(tmpl, tmpl, key.Public(), key)
}

// NodeCACommonName names the node-issuing CA.
const NodeCACommonName = "Joblet-Node-CA"

// IssueNodeCA signs the node-issuing CA for pub: the CA nodes sign their
// own server certificates with. It is constrained so that holding its key
// gives no client power: extended key usage serverAuth only (verifiers,
// Go's and openssl's, refuse a client certificate chaining through it),
// pathlen 0 (it signs leaves, never another CA), and no CRL signing (the
// CRL is the root's). names bound the servers it can stand for (a
// critical nameConstraints extension, see NameConstraints): a stolen copy
// of its key cannot impersonate a public name. Empty names leave it
// unconstrained: only to re-sign one made before name constraints for its
// own key, which the operator constrains when re-keying it (certs.NodeCA).
// Its lifetime is capped at the root's.
func (ca *CA) IssueNodeCA(pub crypto.PublicKey, now time.Time, lifetime time.Duration, names NameConstraints) (Issued, error) {
	is, err := ca.issue(nodeCATemplate(names), pub, now, lifetime)
	if err != nil {
		return Issued{}, fmt.Errorf("issue the node-issuing CA: %w", err)
	}
	return is, nil
}

// ReissueNodeCA re-signs the node-issuing CA old for its own key with
// names, keeping its validity window (cut at this CA's): a widening of
// its names or a root's change moves nothing of when its key is due
// (NodeCADue), so its lifetime still bounds what a stolen copy of the key
// is worth. old must not have expired: a key past its lifetime gets a
// new one, not a new certificate.
func (ca *CA) ReissueNodeCA(old *x509.Certificate, now time.Time, names NameConstraints) (Issued, error) {
	if !now.Before(old.NotAfter) {
		return Issued{}, fmt.Errorf("the node-issuing CA expired on %s: give it a new key, not a new certificate", old.NotAfter.UTC().Format(time.RFC3339))
	}
	tmpl := nodeCATemplate(names)
	tmpl.NotBefore, tmpl.NotAfter = old.NotBefore, old.NotAfter
	is, err := ca.issue(tmpl, old.PublicKey, now, old.NotAfter.Sub(old.NotBefore))
	if err != nil {
		return Issued{}, fmt.Errorf("re-issue the node-issuing CA: %w", err)
	}
	return is, nil
}

func nodeCATemplate(names NameConstraints) *x509.Certificate {
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{Organization},
			OrganizationalUnit: []string{"node-CA"},
			CommonName:         NodeCACommonName,
		},
		IsCA:           true,
		MaxPathLen:     0,
		MaxPathLenZero: true,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if !names.Empty() {
		tmpl.PermittedDNSDomainsCritical = true
		tmpl.PermittedDNSDomains = names.DNS
		tmpl.PermittedIPRanges = names.IPs
		// A kind of name without a permitted subtree is not constrained
		// at all: URI and email names, which no server certificate of
		// ours carries, are permitted under .invalid only.
		tmpl.PermittedURIDomains = []string{nowhere}
		tmpl.PermittedEmailAddresses = []string{nowhere}
	}
	return tmpl
}

// AllowsIntermediates reports whether a root CA may have a CA under it:
// roots made before the node-issuing CA existed carry pathlen 0, and no
// verifier accepts a chain through a CA under them.
func AllowsIntermediates(root *x509.Certificate) bool {
	return !(root.MaxPathLen == 0 && root.MaxPathLenZero)
}

// IssueServer signs a server certificate for pub with the given SANs.
func (ca *CA) IssueServer(pub crypto.PublicKey, sans SANs, now time.Time, lifetime time.Duration) (Issued, error) {
	if len(sans.DNS) == 0 && len(sans.IPs) == 0 {
		return Issued{}, errors.New("a server certificate needs at least one SAN")
	}
	// A name outside the issuer's constraints makes a certificate every
	// verifier refuses: say so now, not at the first handshake.
	if nc, ok := NodeConstraintsOf(ca.Cert); ok {
		if err := nc.Permits(sans); err != nil {
			return Issued{}, err
		}
	}
	cn := "joblet-server"
	if len(sans.DNS) > 0 {
		cn = sans.DNS[0]
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{Organization},
			OrganizationalUnit: []string{"server"},
			CommonName:         cn,
		},
		DNSNames:    sans.DNS,
		IPAddresses: sans.IPs,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	return ca.issue(tmpl, pub, now, lifetime)
}

// IssueClient signs a client certificate for pub carrying role in its OU.
func (ca *CA) IssueClient(pub crypto.PublicKey, role Role, now time.Time, lifetime time.Duration) (Issued, error) {
	if _, err := ParseRole(string(role)); err != nil {
		return Issued{}, err
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{Organization},
			OrganizationalUnit: []string{string(role)},
			CommonName:         string(role) + "-client",
		},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, pub, now, lifetime)
}

func (ca *CA) issue(tmpl *x509.Certificate, pub crypto.PublicKey, now time.Time, lifetime time.Duration) (Issued, error) {
	if lifetime <= 0 {
		return Issued{}, errors.New("certificate lifetime must be positive")
	}
	if !now.Before(ca.Cert.NotAfter) {
		return Issued{}, fmt.Errorf("the CA expired on %s: rotate the CA before issuing certificates",
			ca.Cert.NotAfter.UTC().Format(time.RFC3339))
	}
	serial, err := NewSerial()
	if err != nil {
		return Issued{}, err
	}
	ski, err := keyID(pub)
	if err != nil {
		return Issued{}, err
	}
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() { // else a re-issue's window (ReissueNodeCA)
		tmpl.NotBefore, tmpl.NotAfter = now.Add(-backdate(lifetime)), now.Add(lifetime)
	}
	if tmpl.NotBefore.Before(ca.Cert.NotBefore) {
		tmpl.NotBefore = ca.Cert.NotBefore
	}
	capped := false
	// A certificate that outlives its CA would stop verifying before its own
	// expiry, silently; cap it and say so.
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
		capped = true
	}
	tmpl.BasicConstraintsValid = true
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if tmpl.IsCA {
		tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature
	}
	if _, isRSA := pub.(*rsa.PublicKey); isRSA {
		// RSA key exchange in TLS 1.2 needs keyEncipherment.
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	tmpl.SubjectKeyId = ski
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	cert, err := sign(tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return Issued{}, err
	}
	return Issued{Cert: cert, Capped: capped}, nil
}

func sign(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, fmt.Errorf("sign certificate: %w", err)
	}
	return x509.ParseCertificate(der)
}

// SANs are the subject alternative names of a server certificate.
type SANs struct {
	DNS []string
	IPs []net.IP
}

// ReissueCA re-signs a root CA certificate with its own key, keeping its
// subject, key identifier and validity, with no path length limit: how a
// root made with pathlen 0 comes to allow the node-issuing CA under it.
// It is the same CA (same name and key): everything it signed stays valid
// under either certificate.
func ReissueCA(old *x509.Certificate, key crypto.Signer) (*x509.Certificate, error) {
	if err := MatchesKey(old, key); err != nil {
		return nil, fmt.Errorf("re-issue the CA: %w", err)
	}
	serial, err := NewSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               old.Subject,
		RawSubject:            old.RawSubject, // byte for byte: the same name
		NotBefore:             old.NotBefore,
		NotAfter:              old.NotAfter,
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            -1,
		KeyUsage:              old.KeyUsage,
		SubjectKeyId:          old.SubjectKeyId,
		AuthorityKeyId:        old.SubjectKeyId,
	}
	return sign(tmpl, tmpl, key.Public(), key)
}
