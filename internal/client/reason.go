package client

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// ErrDeadCert marks a client certificate that expired or was revoked:
// no refresh brings it back, the operator re-issues the role.
var ErrDeadCert = errors.New("client certificate unusable")

// DeadCert says whether the client certificate of entry n is expired at
// now or listed in the entry's CRL (a CRL the config holds was verified
// when it was taken), naming the fix; nil when neither.
func DeadCert(n *config.Node, now time.Time) error {
	if what, role := deadReason(n, now); what != "" {
		return fmt.Errorf("%w: the client certificate (role %s, serial %s) %s: %s", ErrDeadCert, roleText(role), serialOf(n), what, reissueFix(role))
	}
	return nil
}

// deadReason is "expired at ..." or "was revoked on ... (reason)", or "".
func deadReason(n *config.Node, now time.Time) (what string, role pki.Role) {
	leaf, _, err := pki.ParseChain([]byte(n.Cert))
	if err != nil {
		return "", "" // the TLS setup reports an unreadable certificate
	}
	role, _ = pki.RoleOf(leaf)
	if !now.Before(leaf.NotAfter) {
		return "expired at " + leaf.NotAfter.UTC().Format(time.RFC3339), role
	}
	if e := revokedEntry(n.CRL, leaf); e != nil {
		return fmt.Sprintf("was revoked on %s (%s)", e.RevocationTime.UTC().Format(time.RFC3339), pki.ReasonName(e.ReasonCode)), role
	}
	return "", role
}

func serialOf(n *config.Node) string {
	if leaf, _, err := pki.ParseChain([]byte(n.Cert)); err == nil {
		return pki.SerialHex(leaf.SerialNumber)
	}
	return "?"
}

func reissueFix(role pki.Role) string {
	return fmt.Sprintf("the operator re-issues the role with `joblet certs reissue --role %s`, then `rnx config refresh` fetches the new one", roleText(role))
}

func roleText(r pki.Role) string {
	if r == "" {
		return "ROLE"
	}
	return string(r)
}

func revokedEntry(crlPEM string, leaf *x509.Certificate) *x509.RevocationListEntry {
	if crlPEM == "" {
		return nil
	}
	crl, err := pki.ParseCRLUnverified([]byte(crlPEM))
	if err != nil {
		return nil
	}
	for i, e := range crl.RevokedCertificateEntries {
		if e.SerialNumber.Cmp(leaf.SerialNumber) == 0 {
			return &crl.RevokedCertificateEntries[i]
		}
	}
	return nil
}

// clientHint names the real reason a node's TLS alert refused this
// config's client certificate. A Go server (joblet) sends "expired
// certificate" for an expired one, "unknown certificate authority" for one
// from a CA it does not trust (in TLS 1.3 the client then sends none, and
// the alert is "certificate required"), and "bad certificate" otherwise: for a
// joblet node that is its CRL listing the certificate or a CA of its chain
// (internal/server/tls.go). What the config itself knows (its certificate's
// expiry, its CRL) comes first; "" when msg is no such alert.
func (c *Conn) clientHint(msg string) string {
	var alert string
	for _, a := range []string{"remote error: tls: expired certificate", "remote error: tls: unknown certificate authority", "remote error: tls: certificate required", "remote error: tls: bad certificate", "remote error: tls: certificate revoked"} {
		if strings.Contains(msg, a) {
			alert = a
		}
	}
	if alert == "" || c.node == nil {
		return ""
	}
	what, role := deadReason(c.node, time.Now())
	who := fmt.Sprintf("the server rejected this client certificate (role %s, serial %s)", roleText(role), serialOf(c.node))
	if what != "" {
		return who + ": it " + what + ": " + reissueFix(role)
	}
	issuer := "?"
	if leaf, _, err := pki.ParseChain([]byte(c.node.Cert)); err == nil {
		issuer = leaf.Issuer.CommonName
	}
	switch alert {
	case "remote error: tls: expired certificate":
		return who + " as expired (the node's clock may be ahead of this machine's): `rnx config refresh`; when the store's is expired too, " + reissueFix(role)
	case "remote error: tls: unknown certificate authority", "remote error: tls: certificate required":
		// TLS 1.3: the node names the CAs it accepts, and a Go client
		// sends no certificate when its own is from none of them.
		return fmt.Sprintf("%s: the node does not trust the CA that issued it (%q): the config is of another fleet, or from before a CA rotation the fleet finished: `rnx config refresh` (or a new config with `rnx config init`)", who, issuer)
	}
	return who + " as revoked (its CRL lists it, or a CA of its chain): " + reissueFix(role)
}
