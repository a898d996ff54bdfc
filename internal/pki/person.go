package pki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"
)

// The user-issuing CA (issue 26): a CA under the root that signs one
// certificate per person, for hours, named after the AWS identity the
// person proved (`rnx login`). Its key is the issuer's alone: nodes and
// jobs never see it.

// UserCACommonName names the user-issuing CA.
const UserCACommonName = "Joblet User CA"

// PersonMaxLifetime is the ceiling on a person's certificate: a stolen
// laptop's certificate is worth hours, and the identity policy is asked
// again at the next login.
const PersonMaxLifetime = 12 * time.Hour

// PersonURIScheme prefixes the canonical ARN in a person's URI SAN.
const PersonURIScheme = "aws-iam"

// IssueUserCA issues the user-issuing CA for pub: clientAuth only (a
// server certificate chaining through it is refused by Go and openssl, so a
// stolen copy of its key can stand for no server) and pathlen 0. No name
// constraints: Go cannot match a person's URI SAN (aws-iam:ARN, no host)
// against any, and refuses the chain when the CA carries some.
func (ca *CA) IssueUserCA(pub crypto.PublicKey, now time.Time, lifetime time.Duration) (Issued, error) {
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{Organization},
			OrganizationalUnit: []string{"user-CA"},
			CommonName:         UserCACommonName,
		},
		IsCA:           true,
		MaxPathLen:     0,
		MaxPathLenZero: true,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	is, err := ca.issue(tmpl, pub, now, lifetime)
	if err != nil {
		return Issued{}, fmt.Errorf("issue the user-issuing CA: %w", err)
	}
	return is, nil
}

// IsUserCA reports whether c is a user-issuing CA (IssueUserCA's): the
// only CA a person's certificate comes from, and one that issues nothing
// but persons' certificates.
func IsUserCA(c *x509.Certificate) bool {
	return c.IsCA && c.Subject.CommonName == UserCACommonName && slices.Contains(c.Subject.OrganizationalUnit, "user-CA")
}

// Person is who a person's certificate names.
type Person struct {
	// ARN is the canonical ARN (a role's with "#SESSION").
	ARN  string
	Role Role
}

// PersonURI is the URI SAN naming p: aws-iam:ARN (the session, if any, as
// the fragment).
func PersonURI(arn string) (*url.URL, error) {
	base, session, _ := strings.Cut(arn, "#")
	if !strings.HasPrefix(base, "arn:") || strings.ContainsAny(arn, " ?\x00") {
		return nil, fmt.Errorf("%q is not a canonical ARN", arn)
	}
	return &url.URL{Scheme: PersonURIScheme, Opaque: base, Fragment: session}, nil
}

// IssuePerson issues a person's client certificate: the role in the OU as
// every client certificate carries it, the readable name in the CN, and
// the canonical ARN in a URI SAN (what nodes and jobs record). Its
// lifetime is capped at PersonMaxLifetime.
func (ca *CA) IssuePerson(pub crypto.PublicKey, p Person, now time.Time, lifetime time.Duration) (Issued, error) {
	if _, err := ParseRole(string(p.Role)); err != nil {
		return Issued{}, err
	}
	if lifetime <= 0 || lifetime > PersonMaxLifetime {
		return Issued{}, fmt.Errorf("a person's certificate lives at most %s, not %s", PersonMaxLifetime, lifetime)
	}
	u, err := PersonURI(p.ARN)
	if err != nil {
		return Issued{}, err
	}
	cn := p.ARN[strings.LastIndexAny(p.ARN, ":/")+1:]
	if len(cn) > 64 {
		cn = cn[:64]
	}
	tmpl := &x509.Certificate{
		Subject: pkix.Name{
			Organization:       []string{Organization},
			OrganizationalUnit: []string{string(p.Role)},
			CommonName:         cn,
		},
		URIs:        []*url.URL{u},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	return ca.issue(tmpl, pub, now, lifetime)
}

// PersonOf reads the person a client certificate names: its URI SAN
// (aws-iam:ARN) and role; ok is false for a certificate that names none (a
// shared role certificate).
func PersonOf(c *x509.Certificate) (Person, bool, error) {
	for _, u := range c.URIs {
		if u.Scheme != PersonURIScheme {
			continue
		}
		role, err := RoleOf(c)
		if err != nil {
			return Person{}, false, err
		}
		arn := u.Opaque
		if u.Fragment != "" {
			arn += "#" + u.Fragment
		}
		return Person{ARN: arn, Role: role}, true, nil
	}
	return Person{}, false, nil
}
