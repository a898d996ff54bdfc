package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Secrets Manager's rotation contract: RotateSecret calls a function with
// four steps, each with the secret's id and a ClientRequestToken, the id
// of the version the rotation makes; it runs a step again when it failed
// or timed out (and so may anyone allowed to invoke the function). Each
// step here is keyed by the token and safe to run again: a step run twice
// never makes a second key or certificate.
//
// The secret rotated is <prefix>/node-ca-key, the node-issuing CA's key.
// Its certificate (<prefix>/node-ca-cert) follows it in finishSecret, the
// same way `joblet certs node-ca --rekey` writes them (freshNodeCA): the
// signed trust state lists the new CA before its key is written anywhere,
// so the root never certifies a key the rotation did not make, and nodes
// never serve from a CA clients refuse.
const (
	RotationCreate = "createSecret" // a new key and certificate under the root, listed; the key as AWSPENDING
	RotationSet    = "setSecret"    // nothing: createSecret listed it already (see RotateSecretStep)
	RotationTest   = "testSecret"   // chain, constraints, listing, a node's renewal from the pending key
	RotationFinish = "finishSecret" // AWSCURRENT to the new key, then its certificate written
)

// VersionStore is a store whose versions the caller names by id (Secrets
// Manager's ClientRequestToken): what a rotation function needs beside the
// Store. awssm.Store is one.
type VersionStore interface {
	// GetVersion reads version id of name; ok false when it does not
	// exist or holds no value yet.
	GetVersion(ctx context.Context, name, id string) (value string, ok bool, err error)
	// PutVersion writes value as version id labelled stage; another
	// value for an id that has one fails with errors.Is(err, ErrExist).
	PutVersion(ctx context.Context, name, id, value string, stage secretstore.Stage) error
	// Stages maps each label to the id of the version it is on.
	Stages(ctx context.Context, name string) (map[secretstore.Stage]string, error)
	// MoveStage puts label on version id.
	MoveStage(ctx context.Context, name string, label secretstore.Stage, id string) error
}

// RotationResult says what one step did.
type RotationResult struct {
	Step   string `json:"step"`
	Secret string `json:"secret"`
	Token  string `json:"token"`
	// Done: what the step found or did, for the log.
	Done string `json:"done"`
	// Issued is the certificate of the version the rotation makes (the
	// node-issuing CA's, or the role's).
	Issued *CertInfo `json:"issued,omitempty"`
}

// RotateSecretStep runs one step of Secrets Manager's rotation of secret
// (a name or an ARN; it must be the fleet's <prefix>/node-ca-key) for the
// version token, with the operator's power (the root's key; iam-policy
// --for rotator):
//
//   - createSecret: when version token holds a key, nothing (a step run
//     again). Else a new key and its certificate under the root are made in
//     memory and listed in the signed trust state (the re-key's mintNodeCA),
//     then the key is written as version token, labelled AWSPENDING. Never
//     the other way round: a pending key someone else wrote is never
//     certified, because setSecret does not list what it finds.
//   - setSecret: nothing. The "service" whose credential changes is the
//     signed trust state, which createSecret set before writing the key.
//   - testSecret: the pending key's certificate is the one the verified
//     trust state lists for it, a CA under the current root limited to
//     server certificates and the fleet's names, and a server certificate
//     it issues for a node's names verifies as a client checks one (chain,
//     usage, the trust state's node-issuing CA rule).
//   - finishSecret: testSecret's checks again (anyone may invoke a step),
//     the root opened, then AWSCURRENT moves to version token (Secrets
//     Manager labels the old key AWSPREVIOUS), then <prefix>/node-ca-cert
//     gets the listed certificate, as an interrupted re-key is completed
//     (ensureNodeCA), then AWSPENDING comes off. Nodes renew from it on
//     their next refresh; clients trust the root.
//
// A step that fails changes no current version: createSecret fails
// before it writes (the root key unreachable, say) or after it listed a CA
// whose key nobody holds (harmless: dropped when it expires); finishSecret
// fails before it moves AWSCURRENT. Secrets Manager keeps AWSPENDING on
// version token, and the next attempt, with the same token, takes up where
// this one stopped. The one exception: finishSecret stopped between the
// key and the certificate has moved the key (nodes keep serving, and
// cannot renew): AWSPENDING stays on the version, a retry of the step
// completes it, and so do `joblet certs node-ca` and the scheduled re-key;
// `certs status` reports it meanwhile.
func (fl *Fleet) RotateSecretStep(ctx context.Context, vs VersionStore, secret, token, step string) (*RotationResult, error) {
	f := fl.defaults()
	n := f.names()
	name := secretName(secret)
	res := &RotationResult{Step: step, Secret: name, Token: token}
	if token == "" {
		return nil, fmt.Errorf("%w: no ClientRequestToken: a rotation step is keyed by the version it makes", ErrUsage)
	}
	if strings.HasPrefix(token, secretstore.StagedVersionPrefix) {
		// rotate-ca's staged versions have such ids, and a step moves one
		// labelled AWSPENDING onto JOBLET_PENDING (AdoptLegacyPending): a
		// run's version would become the staged CA key or certificate.
		// Secrets Manager itself runs such a token when a rotation begun
		// by an earlier joblet holds AWSPENDING (it takes that for a
		// rotation of its own): that one is moved onto its label, and
		// the run ends.
		if err := f.adoptLegacyPending(ctx); err != nil {
			return nil, err
		}
		if labels, err := vs.Stages(ctx, name); err != nil {
			return nil, err
		} else if labels[secretstore.RotationPending] != token {
			res.Done = "version " + token + " is a rotation begun by `rotate-ca` (labelled " + string(secretstore.Pending) + " now), not a run of this function: nothing to do; the next scheduled run makes the fleet's next step"
			return res, nil
		}
		return nil, fmt.Errorf("%w: the ClientRequestToken %q starts with %q, the prefix of the versions `rotate-ca` stages, which a rotation's version must not have: rotate with another token (Secrets Manager's own are UUIDs). If Secrets Manager holds this rotation, end it: `aws secretsmanager update-secret-version-stage --secret-id %s --version-stage AWSPENDING --remove-from-version-id %s`",
			ErrUsage, token, secretstore.StagedVersionPrefix, name, token)
	}
	for _, r := range pki.Roles {
		if name == n.ClientKey(r) {
			return f.rotateRoleStep(ctx, vs, res, r)
		}
	}
	switch name {
	case n.CAKey():
		return f.rotateRootStep(ctx, vs, res)
	case n.UserCA():
		return f.rotateUserCAStep(ctx, vs, res)
	}
	if name != n.NodeCAKey() {
		var keys []string
		for _, r := range pki.Roles {
			keys = append(keys, n.ClientKey(r))
		}
		return nil, fmt.Errorf("%w: this rotation function rotates %s (the root's key), %s (the node-issuing CA's key), %s (the user-issuing CA) and the role keys (%s) of the fleet with prefix %q; it was called for %s: point that secret's rotation at a function configured for its fleet (SECRETS_PREFIX)",
			ErrUsage, n.CAKey(), n.NodeCAKey(), n.UserCA(), strings.Join(keys, ", "), n.Prefix, secret)
	}
	stages, err := vs.Stages(ctx, name)
	if err != nil {
		return nil, err
	}
	if stages[secretstore.Current] == "" {
		return nil, fmt.Errorf("%w: %s has no AWSCURRENT version: create the node-issuing CA first (`joblet certs node-ca`)", ErrUsage, name)
	}
	return runSecretStep(ctx, vs, res, secretSteps{
		name:  name,
		holds: "key",
		create: func() (*RotationResult, error) {
			if stages[secretstore.RotationPending] != "" && stages[secretstore.RotationPending] != token && stages[secretstore.RotationPending] != stages[secretstore.Current] {
				return nil, fmt.Errorf("%w: %s has another rotation in progress (AWSPENDING on version %s): let Secrets Manager complete it, or remove that label (`aws secretsmanager update-secret-version-stage --version-stage AWSPENDING --remove-from-version-id %s`)",
					ErrUsage, name, stages[secretstore.RotationPending], stages[secretstore.RotationPending])
			}
			s, root, old, err := f.readNodeCA(ctx)
			if err != nil {
				return nil, err
			}
			nca, keyPEM, err := f.mintNodeCA(ctx, s, root, old)
			if err != nil {
				return nil, err
			}
			if err := vs.PutVersion(ctx, name, token, keyPEM, secretstore.RotationPending); err != nil {
				// A concurrent run of this step wrote its key first: that
				// one is the rotation's (ours is listed, held by nobody).
				return wroteFirst(res, err)
			}
			info := infoOf(nca.Cert)
			res.Issued, res.Done = &info, "a new node-issuing CA (serial "+info.Serial+") listed in the signed trust state; its key is version "+token+" (AWSPENDING)"
			return res, nil
		},
		set: "nothing: createSecret listed the new node-issuing CA in the signed trust state before it wrote the key",
		check: func(pending string) (*RotationResult, error) {
			nca, err := f.checkPendingNodeCA(ctx, pending)
			if err != nil {
				return nil, err
			}
			info := infoOf(nca.Cert)
			res.Issued = &info
			if step == RotationTest {
				res.Done = "the pending node-issuing CA (serial " + info.Serial + ") is listed, chains to the root and issues a node's certificate that verifies"
				return res, nil
			}
			// The root is opened before anything moves: unreachable, the
			// step fails with the current version unchanged.
			_, root, err := f.readWithRoot(ctx, false)
			if err != nil {
				return nil, err
			}
			if err := vs.MoveStage(ctx, name, secretstore.Current, token); err != nil {
				return nil, err
			}
			s, err := f.readState(ctx, scope{bothKeys: true, nodeCA: true})
			if err != nil {
				return nil, err
			}
			if err := s.trusted(); err != nil {
				return nil, err
			}
			got, err := f.ensureNodeCA(ctx, s, root, false)
			if err != nil {
				return nil, err
			}
			if got == nil || !pki.SameKey(got.Cert, nca.Cert) {
				return nil, fmt.Errorf("%w: after moving AWSCURRENT of %s to version %s the store's node-issuing pair is not the rotation's: another writer changed it; run the step again", ErrInconsistentStore, name, token)
			}
			// AWSPENDING off the finished version, last: until the
			// certificate is written the version keeps it, and a retry of
			// the rotation completes it. None then suggests a rotation in
			// progress (AWS accepts it on the current version or on none).
			if err := vs.MoveStage(ctx, name, secretstore.RotationPending, ""); err != nil {
				return nil, err
			}
			res.Done = "AWSCURRENT is version " + token + "; " + n.NodeCACert() + " holds its certificate (serial " + info.Serial + "): nodes renew from it on their next refresh"
			return res, nil
		},
	})
}

// checkPendingNodeCA is testSecret: keyPEM, a pending node-issuing key,
// with the certificate the verified trust state lists for it (nodeKeyVouch:
// never a certificate only the store holds), is a node-issuing CA under
// the current root, and a server certificate it issues for a node's names
// verifies as a client checks a node's.
func (f *Fleet) checkPendingNodeCA(ctx context.Context, keyPEM string) (*pki.CA, error) {
	s, err := f.readState(ctx, scope{bothKeys: true, nodeCA: true})
	if err != nil {
		return nil, err
	}
	if err := s.trusted(); err != nil {
		return nil, err
	}
	n := s.n
	key, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		return nil, fmt.Errorf("%w: the pending version of %s does not hold a usable key: %v", ErrInconsistentStore, n.NodeCAKey(), err)
	}
	if s.doc == nil || len(s.doc.NodeCACerts()) == 0 {
		return nil, fmt.Errorf("%w: the fleet's signed trust state lists no node-issuing CA, so no rotation can be checked against it: run `joblet certs node-ca` once by hand", ErrUsage)
	}
	cert := s.nodeKeyVouch(key, nil)
	if cert == nil {
		return nil, fmt.Errorf("%w: the pending key in %s is not one the signed trust state (version %d) lists a node-issuing CA for: written without the root key, or its listing was dropped since. Remove its AWSPENDING label and rotate again",
			ErrInconsistentStore, n.NodeCAKey(), s.doc.Version)
	}
	if err := pki.CheckNodeCA(cert, s.ca, f.Now()); err != nil {
		return nil, fmt.Errorf("%w: the pending node-issuing CA (serial %s): %v", ErrInconsistentStore, pki.SerialHex(cert.SerialNumber), err)
	}
	nc, ok := pki.NodeConstraintsOf(cert)
	if !ok {
		return nil, fmt.Errorf("%w: the pending node-issuing CA (serial %s) carries no name constraints", ErrInconsistentStore, pki.SerialHex(cert.SerialNumber))
	}
	nca := &pki.CA{Cert: cert, Key: key}
	// A node's renewal: a new key, a server certificate for names the
	// fleet's nodes carry, and the check a client makes of the chain.
	sans := probeSANs(nc)
	leafKey, err := pki.GenerateKey(f.KeyType, nil)
	if err != nil {
		return nil, err
	}
	is, err := nca.IssueServer(leafKey.Public(), sans, f.Now(), pki.DefaultNodeCALifetime)
	if err != nil {
		return nil, fmt.Errorf("the pending node-issuing CA cannot issue a node's certificate for %v: %w", append(sans.DNS, ipStrings(sans.IPs)...), err)
	}
	if err := pki.VerifyLeaf(is.Cert, s.trust, x509.ExtKeyUsageServerAuth, f.Now(), cert); err != nil {
		return nil, fmt.Errorf("%w: a node's certificate from the pending node-issuing CA: %v", ErrInconsistentStore, err)
	}
	if !s.doc.AllowsServerChain([]*x509.Certificate{is.Cert, cert, s.ca}) {
		return nil, fmt.Errorf("%w: the signed trust state refuses a node's chain through the pending node-issuing CA", ErrInconsistentStore)
	}
	return nca, nil
}

// probeSANs are names a node of the fleet carries that nc permits: the
// defaults' localhost and 127.0.0.1 when permitted, else its first DNS
// name and first address.
func probeSANs(nc pki.NameConstraints) pki.SANs {
	sans := pki.SANs{DNS: []string{"localhost"}, IPs: []net.IP{net.IPv4(127, 0, 0, 1)}}
	if nc.Permits(sans) == nil {
		return sans
	}
	sans = pki.SANs{}
	for _, d := range nc.DNS {
		if d = strings.TrimPrefix(d, "."); d != "" {
			sans.DNS = []string{"node." + d}
			break
		}
	}
	for _, r := range nc.IPs {
		sans.IPs = []net.IP{r.IP}
		break
	}
	return sans
}

func ipStrings(ips []net.IP) []string {
	var out []string
	for _, ip := range ips {
		out = append(out, ip.String())
	}
	return out
}

// secretName is the name of a secret given by name or ARN
// (arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME-XXXXXX: Secrets
// Manager adds a dash and six characters).
func secretName(id string) string {
	_, rest, ok := strings.Cut(id, ":secret:")
	if !ok || !strings.HasPrefix(id, "arn:") {
		return id
	}
	if i := strings.LastIndex(rest, "-"); i >= 0 && len(rest)-i == 7 {
		return rest[:i]
	}
	return rest
}

// rotateRoleStep is RotateSecretStep for a role's client key
// (<prefix>/client-key-<role>, <prefix>/client-key for admin), the pair
// re-issued with the contract `joblet certs reissue` keeps: a new key and
// certificate from the root, the old certificate left valid (configs from
// before keep working until it expires or is revoked):
//
//   - createSecret: nothing when version token holds a key. Else the new
//     pair is claimed as reissue claims it (a create-only record named
//     after the current certificate's serial: every run gets the same
//     pair), nothing when the role's certificate changed since it was
//     read (stillReplacing, as reissue), else its certificate written
//     as version token of
//     <prefix>/client-cert-<role>, then its key as version token of the
//     key, both AWSPENDING;
//   - setSecret: nothing (clients take the pair with `rnx config refresh`);
//   - testSecret: the pending pair matches, is a client certificate of the
//     role from the current root, unrevoked;
//   - finishSecret: the checks again, then AWSCURRENT to version token on
//     the key, then on the certificate (key first, as everywhere: a reader
//     between sees a mismatch it reports and re-reads).
func (f *Fleet) rotateRoleStep(ctx context.Context, vs VersionStore, res *RotationResult, role pki.Role) (*RotationResult, error) {
	n := f.names()
	keyName, certName, token := n.ClientKey(role), n.ClientCert(role), res.Token
	return runSecretStep(ctx, vs, res, secretSteps{
		name:  keyName,
		holds: "key",
		create: func() (*RotationResult, error) {
			s, err := f.readState(ctx, scope{bothKeys: true, roles: []pki.Role{role}})
			if err != nil {
				return nil, err
			}
			if err := s.trusted(); err != nil {
				return nil, err
			}
			keyPEM, certPEM, pair, old, created, err := f.reissuePair(ctx, s, role)
			if err != nil {
				return nil, err
			}
			// As reissue: the role's certificate must still be the one
			// read, or the pair's (a slow run would put back a pair a
			// later re-issue replaced, or, its record pruned, replace
			// that re-issue's pair with one of its own).
			if err := f.stillReplacing(ctx, role, old, pair, created); err != nil {
				return nil, err
			}
			for _, w := range []struct{ name, value string }{{certName, certPEM}, {keyName, keyPEM}} {
				if err := vs.PutVersion(ctx, w.name, token, w.value, secretstore.RotationPending); err != nil {
					return nil, err
				}
			}
			info := infoOf(pair.Cert)
			res.Issued, res.Done = &info, "a new "+string(role)+" pair (serial "+info.Serial+") is version "+token+" (AWSPENDING) of "+keyName+" and "+certName
			return res, nil
		},
		set: "nothing: clients take the new pair with `rnx config refresh`; configs from before keep working until their certificate expires or is revoked",
		check: func(keyPEM string) (*RotationResult, error) {
			s, err := f.readState(ctx, scope{bothKeys: true, roles: []pki.Role{role}})
			if err != nil {
				return nil, err
			}
			if err := s.trusted(); err != nil {
				return nil, err
			}
			certPEM, ok, err := vs.GetVersion(ctx, certName, token)
			if err != nil {
				return nil, err
			}
			switch {
			case !ok && res.Step == RotationTest && keyPEM == s.vals[keyName]:
				// Secrets Manager testing the function when a schedule is set
				// without rotating now: a pending copy of the current key.
				certPEM = s.vals[certName]
			case !ok:
				return nil, fmt.Errorf("%w: version %s of %s holds no certificate: createSecret has not run for this token", ErrUsage, token, certName)
			}
			pair, err := parsePair(certPEM, keyPEM, certName, keyName)
			if err != nil {
				return nil, err
			}
			if got, err := pki.RoleOf(pair.Cert); err != nil || got != role {
				return nil, fmt.Errorf("%w: the pending certificate of %s is not a %s certificate (%v %v)", ErrInconsistentStore, certName, role, got, err)
			}
			if err := pki.VerifyLeaf(pair.Cert, []*x509.Certificate{s.ca}, x509.ExtKeyUsageClientAuth, f.Now()); err != nil {
				return nil, fmt.Errorf("%w: the pending certificate of %s: %v", ErrInconsistentStore, certName, err)
			}
			if s.revoked[pair.Cert.SerialNumber.Text(16)] {
				return nil, fmt.Errorf("%w: the pending certificate of %s (serial %s) is revoked", ErrInconsistentStore, certName, pki.SerialHex(pair.Cert.SerialNumber))
			}
			info := infoOf(pair.Cert)
			res.Issued = &info
			if res.Step == RotationTest {
				res.Done = "the pending " + string(role) + " pair (serial " + info.Serial + ") matches, chains to the current root and is not revoked"
				return res, nil
			}
			// Key first, as everywhere; AWSPENDING off both last.
			for _, move := range []struct {
				name  string
				label secretstore.Stage
				to    string
			}{{keyName, secretstore.Current, token}, {certName, secretstore.Current, token}, {certName, secretstore.RotationPending, ""}, {keyName, secretstore.RotationPending, ""}} {
				if err := vs.MoveStage(ctx, move.name, move.label, move.to); err != nil {
					return nil, err
				}
			}
			res.Done = "AWSCURRENT is version " + token + " of " + keyName + " and " + certName + " (serial " + info.Serial + "): clients take it with `rnx config refresh`; configs from before keep working until their certificate expires or is revoked"
			return res, nil
		},
	})
}

// RotatedSecrets are the secrets the rotation function rotates
// (RotateSecretStep): the node-issuing CA's key, each role's key, the
// user-issuing CA (a fleet with logins), then the root's (a root kept in
// the store; in KMS it has no ca-key).
func (n Names) RotatedSecrets() []string {
	out := []string{n.NodeCAKey()}
	for _, r := range pki.Roles {
		out = append(out, n.ClientKey(r))
	}
	return append(out, n.UserCA(), n.CAKey())
}
