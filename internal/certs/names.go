package certs

import (
	"math/big"
	"strings"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Names are the secret names of one fleet under a prefix. The admin pair has
// no suffix, as the spec and existing deployments name it.
type Names struct{ Prefix string }

func (n Names) CACert() string { return n.Prefix + "/ca-cert" }
func (n Names) CAKey() string  { return n.Prefix + "/ca-key" }

// CAKMSKey names the AWS KMS key that holds the CA's private key in KMS
// mode: a reference (the key's ARN), never key material. Like ca-key it is
// created before ca-cert (the claim of a first node) and staged with it in
// a rotation. The CA's signer is whichever of ca-key and ca-kms-key has the
// public key of the current ca-cert.
func (n Names) CAKMSKey() string { return n.Prefix + "/ca-kms-key" }

// NodeCACert and NodeCAKey are the node-issuing CA: signed by the root
// (ca-cert), limited to server certificates. Nodes sign their own server
// certificates with it and read nothing else of the fleet's keys. Its key
// is kept in the store in both CA key modes, so a node needs no KMS access.
func (n Names) NodeCACert() string { return n.Prefix + "/node-ca-cert" }
func (n Names) NodeCAKey() string  { return n.Prefix + "/node-ca-key" }

// Node lists what a node reads to serve and renew: the root certificate,
// the node-issuing pair, the trust bundle and the CRL. No root key, no
// client key: the node policy grants these and nothing else.
func (n Names) Node() []string { return nodeScope.names(n) }

func (n Names) ClientCert(r pki.Role) string {
	if r == pki.Admin {
		return n.Prefix + "/client-cert"
	}
	return n.Prefix + "/client-cert-" + string(r)
}

func (n Names) ClientKey(r pki.Role) string {
	if r == pki.Admin {
		return n.Prefix + "/client-key"
	}
	return n.Prefix + "/client-key-" + string(r)
}

// Bundle is the trust bundle: every CA nodes and clients trust. It exists
// once a CA rotation has begun; without it the trust is ca-cert alone.
func (n Names) Bundle() string { return n.Prefix + "/ca-bundle" }

// CRL is the certificate revocation list, signed by the current CA.
func (n Names) CRL() string { return n.Prefix + "/crl" }

// IdentityPolicy is the root-signed identity policy (internal/idpolicy):
// which people (`rnx login`) may hold which role. Nodes read it.
func (n Names) IdentityPolicy() string { return n.Prefix + "/identity-policy" }

// UserCA is the user-issuing CA (`rnx login`, issue 26): its certificate
// and key in one secret, so they are written at once. Only the issuer's
// policy (iam-policy --for issuer) reads it: no node, job or client.
func (n Names) UserCA() string { return n.Prefix + "/user-ca" }

// CACross is the CA of a rotation cross-signed by the CA it replaces
// (written by `rotate-ca begin`): presented after a certificate of the new
// CA, it lets configs that trust only the old CA verify it (see cross.go).
func (n Names) CACross() string { return n.Prefix + "/ca-cross" }

// Rotation names the record of the rotation away from the CA with serial
// (hex): create-only, so concurrent or interrupted `rotate-ca begin` runs
// agree on one new CA.
func (n Names) Rotation(serial string) string { return n.Prefix + "/ca-rotation/" + serial }

// Reissue names the record of a role's client certificate re-issue, after
// the certificate with serial (hex): create-only, like Rotation.
func (n Names) Reissue(role pki.Role, serial string) string {
	return n.Prefix + "/client-reissue/" + string(role) + "-" + serial
}

// ReissueDir is the folder of the re-issue records (Reissue).
func (n Names) ReissueDir() string { return n.Prefix + "/client-reissue" }

// ParseReissue is the role and replaced serial a re-issue record's name
// holds: only a name Reissue gives, exactly (a known role, the serial in
// lower-case hex without leading zeros), so nothing else under the
// folder is taken for a record.
func (n Names) ParseReissue(name string) (pki.Role, *big.Int, bool) {
	rest, ok := strings.CutPrefix(name, n.ReissueDir()+"/")
	if !ok {
		return "", nil, false
	}
	for _, r := range pki.Roles {
		hex, ok := strings.CutPrefix(rest, string(r)+"-")
		if !ok {
			continue
		}
		serial, ok := new(big.Int).SetString(hex, 16)
		if ok && serial.Sign() > 0 && n.Reissue(r, serial.Text(16)) == name {
			return r, serial, true
		}
	}
	return "", nil, false
}

// All lists every shared secret in the order a first node creates them:
// the CA pair, each role's pair, then the node-issuing pair. The
// node-issuing pair comes last because it is what a joining node reads to
// join: a fleet whose creator crashed before it is completed by the next
// node that may create (a joining node cannot see the role pairs).
func (n Names) All() []string {
	out := []string{n.CACert(), n.CAKey()}
	for _, r := range pki.Roles {
		out = append(out, n.ClientCert(r), n.ClientKey(r))
	}
	return append(out, n.NodeCACert(), n.NodeCAKey())
}

// Description is the human text stored with each secret, as the spec lists.
func (n Names) Description(name string) string {
	switch name {
	case n.CACert():
		return "Joblet Root CA Certificate - shared across all instances"
	case n.CAKey():
		return "Joblet Root CA Private Key - shared across all instances"
	case n.NodeCACert():
		return "Joblet Node-issuing CA Certificate (server certificates only) - read by every instance"
	case n.NodeCAKey():
		return "Joblet Node-issuing CA Private Key (server certificates only) - read by every instance"
	case n.CAKMSKey():
		return "Joblet Root CA: the AWS KMS key that holds its private key (a key ARN, not key material)"
	case n.Bundle():
		return "Joblet trusted CA certificates - shared across all instances and clients"
	case n.CRL():
		return "Joblet certificate revocation list - shared across all instances and clients"
	case n.UserCA():
		return "Joblet User-issuing CA certificate and private key (people's certificates, rnx login) - read only by the issuer"
	case n.CACross():
		return "Joblet next Root CA cross-signed by the current one - shared across all instances and clients during a CA rotation"
	}
	for _, r := range pki.Roles {
		title := map[pki.Role]string{pki.Admin: "Admin", pki.Maintainer: "Maintainer", pki.Developer: "Developer", pki.Reader: "Reader"}[r]
		switch name {
		case n.ClientCert(r):
			return "Joblet " + title + " Client Certificate - shared across all clients"
		case n.ClientKey(r):
			return "Joblet " + title + " Client Private Key - shared across all clients"
		}
	}
	return "Joblet secret"
}

// Tags say what manages a secret and what it holds.
func (n Names) Tags(name string) map[string]string {
	kind := "certificate"
	switch name {
	case n.CAKey(), n.NodeCAKey(), n.UserCA():
		kind = "private-key"
	case n.CAKMSKey():
		kind = "kms-key-reference"
	}
	for _, r := range pki.Roles {
		if name == n.ClientKey(r) {
			kind = "private-key"
		}
	}
	return map[string]string{"managed-by": "joblet", "joblet-prefix": n.Prefix, "joblet-content": kind}
}

// Secret builds the Secret to create for name.
func (n Names) Secret(name, value string) secretstore.Secret {
	return secretstore.Secret{Name: name, Value: value, Description: n.Description(name), Tags: n.Tags(name)}
}
