package pki

import (
	"crypto/x509"
	"fmt"
	"strings"
)

// Role is what a client certificate allows, carried in its OU.
type Role string

const (
	Admin      Role = "admin"
	Maintainer Role = "maintainer"
	Developer  Role = "developer"
	Reader     Role = "reader"
)

// Roles lists every role, admin first: the order of client configs.
var Roles = []Role{Admin, Maintainer, Developer, Reader}

// ParseRole accepts a role name; "viewer" is the legacy name of reader.
func ParseRole(s string) (Role, error) {
	switch s {
	case "viewer":
		return Reader, nil
	case string(Admin), string(Maintainer), string(Developer), string(Reader):
		return Role(s), nil
	}
	return "", fmt.Errorf("unknown role %q: use admin, maintainer, developer or reader", s)
}

// RoleOf reads the role from a client certificate's OU. A certificate with
// no recognised role, or with two different ones, has none.
func RoleOf(cert *x509.Certificate) (Role, error) {
	var found Role
	for _, ou := range cert.Subject.OrganizationalUnit {
		r, err := ParseRole(strings.ToLower(strings.TrimSpace(ou)))
		if err != nil {
			continue
		}
		if found != "" && found != r {
			return "", fmt.Errorf("certificate %q carries two roles (%s, %s)", cert.Subject.CommonName, found, r)
		}
		found = r
	}
	if found == "" {
		return "", fmt.Errorf("certificate %q has no joblet role in its OU %q", cert.Subject.CommonName, cert.Subject.OrganizationalUnit)
	}
	return found, nil
}
