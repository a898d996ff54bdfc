package certs

// The full path of a bootstrap: create, complete or adopt every shared
// pair, the key of each first (the claim).

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	mathrand "math/rand/v2"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// ensure makes the fleet's shared material available to this node: it
// joins a fleet that has a node-issuing CA (an operator, or an embedded
// node, which is its own operator, always takes the full path), and
// otherwise reads the
// whole state in one store call and creates whatever is missing. The key
// of each pair is created first and acts as the claim: create-only means
// one node wins, the others read the winner's key. A key found without its
// certificate (the winner crashed, or is still working) is completed by
// issuing the certificate for that key; since every candidate certificate
// is for the same key, whichever is stored first serves everyone. first,
// when not nil, is the join's read, made already (see join).
func (b *bootstrapper) ensure(ctx context.Context, first *state) (*shared, error) {
	found := foundSome
	if !b.operator {
		sh, f, err := b.join(ctx, first)
		if sh == nil && err == nil && f == foundEmpty && !contended(b.f.Store) {
			sh, f, err = b.awaitEmpty(ctx)
		}
		if sh != nil || err != nil {
			return sh, err
		}
		found = f
	}
	if err := b.openKMS(ctx); err != nil {
		return nil, err
	}
	vals := map[string]string{}
	switch found {
	case foundCreating:
		// Wait for the node creating the fleet (each try reads one secret
		// until the last is there), then adopt what it wrote.
		fresh, err := b.awaitFleet(ctx, -1, b.o.AwaitFirst/2)
		if err != nil {
			return nil, err
		}
		maps.Copy(vals, fresh)
	case foundSome:
		// An upgraded node on the policy from before the node-issuing CA
		// (it may read the root's key and the role pairs, not node-ca-* or
		// ca-cross) joins as it did (orBefore13); a node on the node policy
		// cannot complete a fleet, and is told who can.
		sc := b.scope()
		sc.orBefore13 = !b.operator
		st, err := b.readPatiently(ctx, sc)
		if errors.Is(err, secretstore.ErrAccessDenied) && !b.operator {
			return nil, fmt.Errorf("%w: the fleet in %s has no node-issuing CA yet (%s), or its first node is still creating it, and this node may read only what a node reads. "+
				"Create or complete it with the operator's permissions (`joblet certs init`, or `joblet certs node-ca` for a fleet from before node-issuing CAs), or re-run in a minute if a first node is starting now",
				err, b.f.StoreDesc, b.names.NodeCACert())
		}
		if err != nil {
			return nil, err
		}
		if err := checkPin(b.f.Pin, st); err != nil {
			return nil, err
		}
		vals = st.vals
	}
	var err error
	// A fleet half there: another node may be creating it right now. Wait
	// while it makes progress rather than race it; a store where nothing
	// moves within the first pause was left by a crash, and this node
	// completes it.
	if have, want := b.present(vals); have > 0 && have < want {
		fresh, err := b.awaitFleet(ctx, have, b.o.AwaitFirst/2)
		if err != nil {
			return nil, err
		}
		maps.Copy(vals, fresh)
	}
	sh := &shared{clients: map[pki.Role]pair{}}
	now := b.f.Now()

	var caCert *x509.Certificate
	var action string
	if b.kms != nil {
		if caCert, action, err = b.ensureKMSCA(ctx, vals); err != nil {
			return nil, err
		}
		sh.ca = pki.CA{Cert: caCert, Key: b.kms}
		sh.caPEM = string(pki.EncodeCert(caCert))
	} else {
		caPair, act, err := b.ensurePair(ctx, vals, b.names.CACert(), b.names.CAKey(),
			func(key crypto.Signer) (*x509.Certificate, error) {
				return pki.NewCA(key, now, b.f.CALifetime)
			},
			func(c *x509.Certificate) error { return pki.CheckCA(c, now) })
		if err != nil {
			return nil, b.kmsFleet(ctx, vals, err)
		}
		sh.ca = pki.CA{Cert: caPair.cert, Key: caPair.key}
		sh.caPEM, caCert, action = caPair.certPEM, caPair.cert, act
	}
	var doc *pki.TrustState
	if sh.trust, doc, err = trustOf(vals[b.names.Bundle()], caCert, b.names, []*x509.Certificate{caCert}, nil, revokedSerials(vals[b.names.CRL()]), now); err != nil {
		return nil, err
	}
	if doc != nil {
		if !doc.TrustsKey(caCert) {
			return nil, fmt.Errorf("%w: the signed trust state (%s) does not list the root in %s (%s): a write without the root key, or a rotation step interrupted: `joblet certs status` says which", ErrInconsistentStore, b.names.Bundle(), b.names.CACert(), pki.Fingerprint(caCert))
		}
		sh.doc = vals[b.names.Bundle()]
	}
	if _, _, err := revokedIn(vals[b.names.CRL()], sh.trust, b.names.CRL()); err != nil {
		return nil, err
	}
	sh.crlPEM = vals[b.names.CRL()]
	b.res.Items = append(b.res.Items, item("CA Certificate", action, b.where(b.names.CACert()), caCert))

	for _, role := range pki.Roles {
		role := role
		p, action, err := b.ensurePair(ctx, vals, b.names.ClientCert(role), b.names.ClientKey(role),
			func(key crypto.Signer) (*x509.Certificate, error) {
				is, err := sh.ca.IssueClient(key.Public(), role, now, b.f.ClientLifetime)
				b.noteCapped(string(role)+" client certificate", is)
				return is.Cert, err
			},
			func(c *x509.Certificate) error { return checkClient(c, role, sh.trust, now) })
		if err != nil {
			return nil, err
		}
		sh.clients[role] = p
		b.res.Items = append(b.res.Items, item(roleTitle(role), action, b.where(b.names.ClientCert(role)), p.cert))
	}
	// Last: the node-issuing pair is what a joining node joins with, so
	// the fleet it finds is whole.
	if err := b.ensureNodeCA(ctx, vals, sh, action == Generated); err != nil {
		return nil, err
	}
	if err := b.ensureTrustState(ctx, vals, sh, action == Generated); err != nil {
		return nil, err
	}
	// Role keys go to client configs only on the node that created the
	// fleet, an embedded node (its own operator), or in a fleet from before
	// the node-issuing CA (whose nodes all held them). A node that joined
	// a burst after waiting for its creator keeps none.
	if action != Generated && !b.operator && !sh.issuer.Cert.Equal(sh.ca.Cert) {
		sh.clients = nil
	}
	return sh, nil
}

// awaitEmpty is a node's second look at a store it found empty, after a
// random pause of up to AwaitEmpty: nodes started together (an
// auto-scaling group's burst) all find it empty, and the one whose pause
// ends first claims the fleet and creates it while the others still wait.
// Most of them then find it whole and join with this read: two calls, not
// the three of a node that claims, loses and reads again (a create
// answered ResourceExistsException). A node alone pays the pause once,
// when it creates a fleet; a node that finds the fleet on its first read
// never waits. The claim still decides who creates the fleet: two nodes
// whose pauses end together both claim, and one loses, as before.
//
// Only on Secrets Manager, where every call is billed and counts against
// a quota (a directory store's reads cost nothing), and not in a burst the
// store has throttled (contended): there the claim is read before it is
// made (claimFirst), and a batch read more would spend the smallest quota.
// The pause lasts up to 2s by default: long enough, measured with 100
// nodes starting on one 2-core machine, for the creator to finish before
// most of the others look again (BENCHMARKS.md, "Fleet convergence").
func (b *bootstrapper) awaitEmpty(ctx context.Context) (*shared, fleetFound, error) {
	if b.o.AwaitEmpty <= 0 || b.o.Mode != config.ModeSecretsManager {
		return nil, foundEmpty, nil
	}
	select {
	case <-ctx.Done():
		return nil, foundEmpty, ctx.Err()
	case <-time.After(time.Duration(mathrand.Int64N(int64(b.o.AwaitEmpty)))):
	}
	// A node given the KMS key to create the fleet that finds it made
	// joins without the warning that the key is not used (join).
	b.waited = true
	return b.join(ctx, nil)
}

// ensureNodeCA sets the issuer of this node's server certificate: the
// node-issuing pair, created (key first, as every pair) when missing, or,
// in a fleet whose CA was made before node-issuing CAs (pathlen 0: nothing
// can chain through a CA under it), the root itself, with a warning.
func (b *bootstrapper) ensureNodeCA(ctx context.Context, vals map[string]string, sh *shared, createdCA bool) error {
	n, now := b.names, b.f.Now()
	legacy := func(why string) error {
		sh.issuer = sh.ca
		msg := why + fmt.Sprintf(": every node signs with the root key and holds the role keys. Move the fleet to split issuing power with `joblet certs node-ca` (docs/OPERATIONS.md, %q)", "Split issuing power")
		b.res.Warnings = append(b.res.Warnings, msg)
		return nil
	}
	if !pki.AllowsIntermediates(sh.ca.Cert) {
		return legacy("this fleet's CA was made before node-issuing CAs")
	}
	// A fleet between the two steps of `certs node-ca` (root re-issued,
	// written to ca-bundle; clients refreshing) must not get a node-issuing
	// CA early: only the operator starts it there. A fleet whose first node
	// crashed before it (no ca-bundle yet) is completed by the next node,
	// as any pair.
	if vals[n.NodeCAKey()] == "" && vals[n.NodeCACert()] == "" && !createdCA && !b.operator && vals[n.Bundle()] != "" {
		return legacy("this fleet has no node-issuing CA yet")
	}
	p, action, err := b.ensurePair(ctx, vals, n.NodeCACert(), n.NodeCAKey(),
		func(key crypto.Signer) (*x509.Certificate, error) {
			names, err := b.newNodeCANames()
			if err != nil {
				return nil, err
			}
			is, err := sh.ca.IssueNodeCA(key.Public(), now, b.f.nodeCALifetime(nil), names)
			return is.Cert, err
		},
		func(c *x509.Certificate) error {
			for _, root := range sh.trust {
				if pki.CheckNodeCA(c, root, now) == nil {
					return nil
				}
			}
			return pki.CheckNodeCA(c, sh.ca.Cert, now)
		})
	if err != nil {
		return err
	}
	sh.issuer = pki.CA{Cert: p.cert, Key: p.key}
	b.res.Items = append(b.res.Items, item("Node-issuing CA", action, b.where(n.NodeCACert()), p.cert))
	return nil
}

// newNodeCANames are what a node-issuing CA this run creates may sign
// for: the defaults, the Fleet's PermitNames (`certs init`: the balancer's
// name) and this node's own names (a first node creating the fleet).
func (b *bootstrapper) newNodeCANames() (pki.NameConstraints, error) {
	names := b.f.nodeCANames(nil, true)
	sans, err := b.o.serverSANs()
	if err != nil {
		return names, err
	}
	own, err := sansConstraints(sans)
	if err != nil {
		return names, err
	}
	return names.Union(own), nil
}

// ensureKMSCA returns the fleet's CA certificate for the KMS key this node
// was given, creating it when the store has none: the key reference
// (ca-kms-key) first, as the claim, then the certificate self-signed
// through KMS. Concurrent first nodes share the key, so a node that loses
// the race for ca-cert adopts the winner's certificate.
func (b *bootstrapper) ensureKMSCA(ctx context.Context, vals map[string]string) (*x509.Certificate, string, error) {
	n, now := b.names, b.f.Now()
	action := Retrieved
	ref, haveRef := vals[n.CAKMSKey()]
	certPEM, haveCert := vals[n.CACert()]
	if !haveRef {
		if haveCert {
			if c, err := pki.ParseCert([]byte(certPEM)); err != nil || !samePublicKey(c, b.kms) {
				return nil, "", fmt.Errorf("%w: this fleet's CA (%s) is not signed by KMS key %s and the store names no KMS key (%s): its private key is kept in the store as %s. %s",
					ErrCAMode, n.CACert(), b.kms.KeyID(), n.CAKMSKey(), n.CAKey(), caModes)
			}
		}
		got, created, err := b.claimFirst(ctx, vals, n.CAKMSKey(), b.kms.KeyID())
		if err != nil {
			return nil, "", err
		}
		ref = got[n.CAKMSKey()]
		if !created {
			certPEM, haveCert = got[n.CACert()]
		}
	}
	if ref != b.kms.KeyID() && ref != b.key.KeyID {
		return nil, "", fmt.Errorf("%w: this fleet's CA key is KMS key %s (%s), but this node was given %s: set JOBLET_CA_KMS_KEY_ID=%s. %s",
			ErrCAMode, ref, n.CAKMSKey(), b.key.KeyID, ref, caModes)
	}
	if !haveCert {
		cert, err := pki.NewCA(b.kms, now, b.f.CALifetime)
		if err != nil {
			return nil, "", fmt.Errorf("self-sign the CA certificate through KMS key %s: %w", b.kms.KeyID(), err)
		}
		got, created, err := b.claim(ctx, n.CACert(), string(pki.EncodeCert(cert)))
		if err != nil {
			return nil, "", err
		}
		if certPEM = got[n.CACert()]; created {
			action = Generated
		}
	}
	cert, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		return nil, "", fmt.Errorf("%w: secret %s does not hold a usable certificate (%v). Restore its previous version", ErrInconsistentStore, n.CACert(), err)
	}
	if !samePublicKey(cert, b.kms) {
		return nil, "", fmt.Errorf("%w: %s is not the certificate of KMS key %s (a rotation step may be in progress; re-run)", ErrInconsistentStore, n.CACert(), b.kms.KeyID())
	}
	if err := pki.CheckCA(cert, now); err != nil {
		return nil, "", fmt.Errorf("%w: %s: %v. Replace it with FORCE_REGENERATE=true (every client then needs the new config)", ErrInconsistentStore, n.CACert(), err)
	}
	return cert, action, nil
}

// kmsFleet turns a CA problem met by a node without a KMS key into the
// explanation of the two modes when the store says the fleet's CA key is
// in KMS (the CA certificate without ca-key, or not matching it).
// vals is what ensure read; only the reference, which a node in store mode
// does not read otherwise, is read here.
func (b *bootstrapper) kmsFleet(ctx context.Context, vals map[string]string, err error) error {
	if !errors.Is(err, ErrInconsistentStore) {
		return err
	}
	key, rerr := b.f.readKMSRef(ctx)
	if rerr != nil || !key.InKMS() {
		return err
	}
	if c, perr := pki.ParseCert([]byte(vals[b.names.CACert()])); perr == nil {
		if k, kerr := pki.ParseKey([]byte(vals[b.names.CAKey()])); kerr == nil && samePublicKey(c, k) {
			return err // the stored key is the CA's: not a mode question
		}
	}
	return fmt.Errorf("%w: this fleet's CA key is in AWS KMS (%s names %s) and this node was not given it: set JOBLET_CA_KMS_KEY_ID=%s (or --ca-kms-key-id). %s",
		ErrCAMode, b.names.CAKMSKey(), key.KeyID, key.KeyID, caModes)
}

// ensurePair returns the stored pair certName/keyName, creating what is
// missing, and checks it: the certificate parses, matches the key and
// passes check. It never replaces a stored secret.
func (b *bootstrapper) ensurePair(ctx context.Context, vals map[string]string, certName, keyName string,
	issue func(crypto.Signer) (*x509.Certificate, error), check func(*x509.Certificate) error) (pair, string, error) {
	keyPEM, haveKey := vals[keyName]
	certPEM, haveCert := vals[certName]
	action := Retrieved
	if !haveKey {
		if haveCert {
			return pair{}, "", fmt.Errorf("%w: %s exists but %s does not, so nothing can be signed with it. "+
				"Store the matching private key as %s (e.g. `aws secretsmanager create-secret --name %s --secret-string file://key.pem`), "+
				"or start a new CA with FORCE_REGENERATE=true (every client then needs the new config)",
				ErrInconsistentStore, certName, keyName, keyName, keyName)
		}
		key, err := pki.GenerateKey(b.f.KeyType, nil)
		if err != nil {
			return pair{}, "", err
		}
		enc, err := pki.EncodeKey(key)
		if err != nil {
			return pair{}, "", err
		}
		// Losing the race means adopting the winner's key (and its
		// certificate if it is already there). Losing the fleet's first
		// claim (the CA key) means waiting for the winner to finish.
		var got map[string]string
		var created bool
		if keyName == b.names.CAKey() {
			got, created, err = b.claimFirst(ctx, vals, keyName, string(enc))
		} else {
			got, created, err = b.claim(ctx, keyName, string(enc), certName)
		}
		if err != nil {
			return pair{}, "", err
		}
		keyPEM = got[keyName]
		if created {
			action = Generated
		} else {
			certPEM, haveCert = got[certName]
		}
	}
	key, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		return pair{}, "", fmt.Errorf("%w: secret %s does not hold a usable private key (%v). Restore its previous version, or replace the shared certificates with FORCE_REGENERATE=true", ErrInconsistentStore, keyName, err)
	}
	if !haveCert {
		cert, err := issue(key)
		if err != nil {
			return pair{}, "", fmt.Errorf("issue %s: %w", certName, err)
		}
		got, created, err := b.claim(ctx, certName, string(pki.EncodeCert(cert)))
		if err != nil {
			return pair{}, "", err
		}
		certPEM = got[certName]
		if created && action == Retrieved {
			action = Completed
		}
	}
	cert, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		return pair{}, "", fmt.Errorf("%w: secret %s does not hold a usable certificate (%v). Restore its previous version, or replace the shared certificates with FORCE_REGENERATE=true", ErrInconsistentStore, certName, err)
	}
	if err := pki.MatchesKey(cert, key); err != nil {
		hint := ""
		if certName != b.names.CACert() {
			hint = " (a `joblet certs reissue` interrupted between the two writes is completed by running it again)"
		}
		return pair{}, "", fmt.Errorf("%w: %s is not the certificate of %s%s. Restore the matching versions, or replace the shared certificates with FORCE_REGENERATE=true", ErrInconsistentStore, certName, keyName, hint)
	}
	if err := check(cert); err != nil {
		return pair{}, "", fmt.Errorf("%w: %s: %v. Replace the shared certificates with FORCE_REGENERATE=true (every client then needs the new config)", ErrInconsistentStore, certName, err)
	}
	return pair{cert: cert, certPEM: certPEM, keyPEM: keyPEM, key: key}, action, nil
}

// checkClient: the right role, and signed by a trusted CA (during a
// rotation a client certificate may still be from the outgoing CA).
func checkClient(c *x509.Certificate, want pki.Role, trust []*x509.Certificate, now time.Time) error {
	got, err := pki.RoleOf(c)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("it carries role %q, not %q", got, want)
	}
	return pki.VerifyLeaf(c, trust, x509.ExtKeyUsageClientAuth, now)
}
