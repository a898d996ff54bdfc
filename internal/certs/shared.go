package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	mathrand "math/rand/v2"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// join makes this node a member of a fleet that has a node-issuing CA,
// reading only what a node may read (nodeScope, one store call): the
// root certificate, the node-issuing pair, the trust and the CRL. ok is
// false when the store holds no such fleet (empty, half made, or made
// before the node-issuing CA): the full path then creates, completes or
// serves it as before.
func (b *bootstrapper) join(ctx context.Context) (sh *shared, ok bool, err error) {
	st := b.read
	b.read = nil // a retry reads again: the store may have moved
	if st == nil {
		st, err = b.readPatiently(ctx, nodeScope)
		if errors.Is(err, secretstore.ErrAccessDenied) {
			// A node policy from before the node-issuing CA: the full
			// path reads what that policy allowed.
			return nil, false, nil
		}
		if err != nil {
			return nil, false, err
		}
	}
	n := b.names
	if len(st.vals) == 0 {
		// An empty store: the full path starts from nothing without
		// reading again (its first create is the claim that tells a
		// node whether another is creating the fleet already).
		b.empty = true
		return nil, false, nil
	}
	if st.vals[n.CACert()] == "" || st.vals[n.NodeCACert()] == "" || st.vals[n.NodeCAKey()] == "" {
		// A new fleet's CA without its node-issuing CA (written last) and
		// no trust bundle yet: a first node is most likely creating it
		// now. The full path waits for it without reading it all first.
		b.creating = st.ca != nil && pki.AllowsIntermediates(st.ca) && st.vals[n.Bundle()] == ""
		return nil, false, nil
	}
	if err := st.trusted(); err != nil {
		return nil, true, err
	}
	if err := pki.CheckCA(st.ca, b.f.Now()); err != nil {
		return nil, true, fmt.Errorf("%w: %s: %v. Rotate the CA (`joblet certs rotate-ca`), or replace it with FORCE_REGENERATE=true", ErrInconsistentStore, n.CACert(), err)
	}
	if st.nodeCAErr != nil {
		return nil, true, st.nodeCAErr
	}
	if b.o.CAKMSKeyID != "" {
		msg := "JOBLET_CA_KMS_KEY_ID (--ca-kms-key-id) is set, but a joining node signs nothing with the root's key (it signs with the node-issuing CA): it is not used here, and the node needs no KMS access"
		b.f.Log.Info(msg)
		b.res.Warnings = append(b.res.Warnings, msg)
	}
	sh = &shared{ca: pki.CA{Cert: st.ca}, caPEM: st.vals[n.CACert()], issuer: *st.nodeCA, trust: st.trust, crlPEM: st.vals[n.CRL()]}
	b.res.Items = append(b.res.Items,
		item("CA Certificate", Retrieved, b.where(n.CACert()), st.ca),
		item("Node-issuing CA", Retrieved, b.where(n.NodeCACert()), st.nodeCA.Cert))
	return sh, true, nil
}

// ensure makes the fleet's shared material available to this node: it
// joins a fleet that has a node-issuing CA (an operator, or an embedded
// node, which is its own operator, always takes the full path), and
// otherwise reads the
// whole state in one store call and creates whatever is missing. The key
// of each pair is created first and acts as the claim: create-only means
// one node wins, the others read the winner's key. A key found without its
// certificate (the winner crashed, or is still working) is completed by
// issuing the certificate for that key; since every candidate certificate
// is for the same key, whichever is stored first serves everyone.
func (b *bootstrapper) ensure(ctx context.Context) (*shared, error) {
	if !b.operator {
		if sh, ok, err := b.join(ctx); ok || err != nil {
			return sh, err
		}
	}
	b.read = nil
	if err := b.openKMS(ctx); err != nil {
		return nil, err
	}
	vals := map[string]string{}
	if b.creating {
		// Wait for the node creating the fleet (each try reads one secret
		// until the last is there), then adopt what it wrote.
		b.creating = false
		fresh, err := b.awaitFleet(ctx, -1, b.o.AwaitFirst/2)
		if err != nil {
			return nil, err
		}
		maps.Copy(vals, fresh)
	} else if !b.empty {
		st, err := b.readPatiently(ctx, b.scope())
		if errors.Is(err, secretstore.ErrAccessDenied) && !b.operator {
			// An upgraded node on the policy from before the node-issuing
			// CA (it may read the root's key and the role pairs, not
			// node-ca-* or ca-cross) joins as it did; a node on the node
			// policy cannot complete a fleet, and is told who can.
			if st, err = b.f.readState(ctx, b.legacyScope()); errors.Is(err, secretstore.ErrAccessDenied) {
				return nil, fmt.Errorf("%w: the fleet in %s has no node-issuing CA yet (%s), or its first node is still creating it, and this node may read only what a node reads. "+
					"Create or complete it with the operator's permissions (`joblet certs init`, or `joblet certs node-ca` for a fleet from before node-issuing CAs), or re-run in a minute if a first node is starting now",
					err, b.f.StoreDesc, b.names.NodeCACert())
			}
		}
		if err != nil {
			return nil, err
		}
		vals = st.vals
	}
	b.empty = false // a retry reads again
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
	if sh.trust, err = trustFrom(vals[b.names.Bundle()], caCert, b.names.Bundle()); err != nil {
		return nil, err
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
	// Role keys go to client configs only on the node that created the
	// fleet, an embedded node (its own operator), or in a fleet from before
	// the node-issuing CA (whose nodes all held them). A node that joined
	// a burst after waiting for its creator keeps none.
	if action != Generated && !b.operator && !sh.issuer.Cert.Equal(sh.ca.Cert) {
		sh.clients = nil
	}
	return sh, nil
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
			is, err := sh.ca.IssueNodeCA(key.Public(), now, b.f.CALifetime)
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
	if ref != b.kms.KeyID() && ref != b.o.CAKMSKeyID {
		return nil, "", fmt.Errorf("%w: this fleet's CA key is KMS key %s (%s), but this node was given %s: set JOBLET_CA_KMS_KEY_ID=%s. %s",
			ErrCAMode, ref, n.CAKMSKey(), b.o.CAKMSKeyID, ref, caModes)
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
	got, gerr := b.f.Store.Get(ctx, []string{b.names.CAKMSKey()})
	ref := got[b.names.CAKMSKey()]
	if gerr != nil || ref == "" {
		return err
	}
	if c, perr := pki.ParseCert([]byte(vals[b.names.CACert()])); perr == nil {
		if k, kerr := pki.ParseKey([]byte(vals[b.names.CAKey()])); kerr == nil && samePublicKey(c, k) {
			return err // the stored key is the CA's: not a mode question
		}
	}
	return fmt.Errorf("%w: this fleet's CA key is in AWS KMS (%s names %s) and this node was not given it: set JOBLET_CA_KMS_KEY_ID=%s (or --ca-kms-key-id). %s",
		ErrCAMode, b.names.CAKMSKey(), ref, ref, caModes)
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

// regenerate replaces the CA and every role pair (FORCE_REGENERATE). Each
// secret gets a new version; the old one stays retrievable as the previous
// version (AWSPREVIOUS). Keys go before certificates so a reader between two
// writes sees a key whose certificate is missing or stale (and reports it)
// rather than a silently wrong pair.
func (b *bootstrapper) regenerate(ctx context.Context) (*shared, error) {
	now := b.f.Now()
	var caKey crypto.Signer = b.kms
	var keyWrite struct{ name, value string }
	if b.kms != nil {
		// The KMS key is the CA's key: a new CA certificate for it, and the
		// reference to it. A new KMS key gives a new CA key.
		keyWrite.name, keyWrite.value = b.names.CAKMSKey(), b.kms.KeyID()
	} else {
		k, err := pki.GenerateKey(b.f.KeyType, nil)
		if err != nil {
			return nil, err
		}
		enc, err := pki.EncodeKey(k)
		if err != nil {
			return nil, err
		}
		caKey, keyWrite.name, keyWrite.value = k, b.names.CAKey(), string(enc)
	}
	caCert, err := pki.NewCA(caKey, now, b.f.CALifetime)
	if err != nil {
		return nil, err
	}
	sh := &shared{ca: pki.CA{Cert: caCert, Key: caKey}, caPEM: string(pki.EncodeCert(caCert)), trust: []*x509.Certificate{caCert}, clients: map[pki.Role]pair{}}
	writes := []struct{ name, value string }{keyWrite, {b.names.CACert(), sh.caPEM}}
	nodeKey, err := pki.GenerateKey(b.f.KeyType, nil)
	if err != nil {
		return nil, err
	}
	nodeCA, err := sh.ca.IssueNodeCA(nodeKey.Public(), now, b.f.CALifetime)
	if err != nil {
		return nil, err
	}
	nodeKeyPEM, err := pki.EncodeKey(nodeKey)
	if err != nil {
		return nil, err
	}
	sh.issuer = pki.CA{Cert: nodeCA.Cert, Key: nodeKey}
	writes = append(writes, struct{ name, value string }{b.names.NodeCAKey(), string(nodeKeyPEM)}, struct{ name, value string }{b.names.NodeCACert(), string(pki.EncodeCert(nodeCA.Cert))})
	for _, role := range pki.Roles {
		key, err := pki.GenerateKey(b.f.KeyType, nil)
		if err != nil {
			return nil, err
		}
		is, err := sh.ca.IssueClient(key.Public(), role, now, b.f.ClientLifetime)
		if err != nil {
			return nil, err
		}
		b.noteCapped(string(role)+" client certificate", is)
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			return nil, err
		}
		p := pair{cert: is.Cert, certPEM: string(pki.EncodeCert(is.Cert)), keyPEM: string(keyPEM)}
		sh.clients[role] = p
		writes = append(writes, struct{ name, value string }{b.names.ClientKey(role), p.keyPEM}, struct{ name, value string }{b.names.ClientCert(role), p.certPEM})
	}
	// A replaced CA is trusted alone: FORCE_REGENERATE is the immediate
	// cut-over (for a compromised key), unlike rotate-ca.
	// The old CA's CRL cannot be verified once it is no longer trusted, and
	// what it lists is refused anyway (its CA is gone): a new, empty CRL
	// signed by the new CA, numbered after the old one. Before the bundle,
	// so a node reading between the two writes can verify both.
	crl, err := b.f.freshCRL(ctx, &sh.ca)
	if err != nil {
		return nil, err
	}
	if crl != "" {
		sh.crlPEM = crl
		writes = append(writes, struct{ name, value string }{b.names.CRL(), crl})
	}
	writes = append(writes, struct{ name, value string }{b.names.Bundle(), sh.caPEM})
	for _, w := range writes {
		if err := putOrCreate(ctx, b.f.Store, b.names, w.name, w.value); err != nil {
			return nil, err
		}
	}
	b.res.Items = append(b.res.Items, item("CA Certificate", Generated, b.where(b.names.CACert()), caCert),
		item("Node-issuing CA", Generated, b.where(b.names.NodeCACert()), nodeCA.Cert))
	for _, role := range pki.Roles {
		b.res.Items = append(b.res.Items, item(roleTitle(role), Generated, b.where(b.names.ClientCert(role)), sh.clients[role].cert))
	}
	return sh, nil
}

// putOrCreate writes a new current version, creating the secret when it
// does not exist yet.
func putOrCreate(ctx context.Context, st secretstore.Store, names Names, name, value string) error {
	err := st.Put(ctx, name, value)
	if errors.Is(err, secretstore.ErrNotExist) {
		err = st.Create(ctx, names.Secret(name, value))
		if errors.Is(err, secretstore.ErrExist) {
			err = st.Put(ctx, name, value)
		}
	}
	if err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	return nil
}

// claimFirst makes the fleet's first claim (the CA key, or the KMS key
// reference), create-only. A node that loses it does not race the winner
// for every other secret (most of those creates would fail, and under
// Secrets Manager's write quota they are what throttles an auto-scaling
// burst): it waits for the winner to finish, then adopts what it wrote.
// vals is updated in place with what it read.
func (b *bootstrapper) claimFirst(ctx context.Context, vals map[string]string, name, value string) (map[string]string, bool, error) {
	switch err := b.createOrAdopt(ctx, name, value); {
	case err == nil:
		return map[string]string{name: value}, true, nil
	case errors.Is(err, secretstore.ErrExist):
		fresh, err := b.awaitFleet(ctx, -1, b.o.AwaitStall)
		if err != nil {
			return nil, false, err
		}
		maps.Copy(vals, fresh)
		if fresh[name] == "" {
			return nil, false, fmt.Errorf("%s was reported to exist but cannot be read back: it may be scheduled for deletion; restore it (`aws secretsmanager restore-secret --secret-id %s`) or wait and re-run", name, name)
		}
		return fresh, false, nil
	default:
		return nil, false, fmt.Errorf("store %s: %w", name, err)
	}
}

// awaitFleet waits for the node that won the first claim to create the
// rest of the fleet, with a growing pause between tries. A try reads the
// whole state (one batch call) first, every fourth time, and once the last
// secret a creating node writes (the node-issuing CA) is there; the tries between read that one
// secret only, so a burst of waiting nodes under Secrets Manager's quotas
// spends the large GetSecretValue quota, one call each, not the batch one.
// It returns when every shared secret is there, or when nothing new has
// appeared for stall (the winner crashed: this node then completes what is
// missing, as after any crash). seen is how many were there already.
func (b *bootstrapper) awaitFleet(ctx context.Context, seen int, stall time.Duration) (map[string]string, error) {
	last := b.names.NodeCACert() // the last secret a creating node writes
	sc := b.scope()
	pause, progress := b.o.AwaitFirst, time.Now()
	for try := 1; ; try++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause/2 + time.Duration(mathrand.Int64N(int64(pause)))):
		}
		pause = min(pause*3/2, 3*time.Second)
		if try > 1 && try%4 != 0 {
			got, err := b.f.Store.Get(ctx, []string{last})
			if errors.Is(err, secretstore.ErrTemporary) {
				continue // throttled while a burst waits: try again after the next pause
			}
			if err != nil {
				return nil, err
			}
			if got[last] == "" {
				continue
			}
		}
		s, err := b.f.readState(ctx, sc)
		if errors.Is(err, secretstore.ErrTemporary) {
			// A whole burst reads at once when the fleet appears: a read
			// throttled after the client's retries waits for the next try
			// (the command's deadline still bounds the whole wait).
			b.f.Log.Debug("reading the fleet was throttled; trying again", "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		have, want := b.present(s.vals)
		switch {
		case have == want:
			return s.vals, nil
		case have > seen:
			seen, progress = have, time.Now()
		case time.Since(progress) >= stall:
			b.f.Log.Info("the node that created the fleet stopped before finishing; completing what is missing", "have", have, "of", want)
			return s.vals, nil
		}
	}
}

// present counts the fleet's shared secrets in vals, and how many a
// complete fleet has: a fleet whose CA allows no CA under it (made before
// the node-issuing CA) is complete without the node-issuing pair.
func (b *bootstrapper) present(vals map[string]string) (have, want int) {
	legacy := false
	if c, err := pki.ParseCert([]byte(vals[b.names.CACert()])); err == nil {
		legacy = !pki.AllowsIntermediates(c)
	}
	for _, n := range b.names.Shared(b.o.CAKMSKeyID != "") {
		if legacy && (n == b.names.NodeCACert() || n == b.names.NodeCAKey()) {
			continue
		}
		want++
		if vals[n] != "" {
			have++
		}
	}
	return have, want
}

// claim creates name with value, create-only. When another node created it
// first it reads back the winner's value, together with also (read in the
// same call). created says whose value it is.
func (b *bootstrapper) claim(ctx context.Context, name, value string, also ...string) (got map[string]string, created bool, err error) {
	err = b.createOrAdopt(ctx, name, value)
	switch {
	case err == nil:
		return map[string]string{name: value}, true, nil
	case errors.Is(err, secretstore.ErrExist):
		got, err := getPatiently(ctx, b.f.Store, append([]string{name}, also...))
		if err != nil {
			return nil, false, fmt.Errorf("read %s after losing the race to create it: %w", name, err)
		}
		if got[name] == "" {
			return nil, false, fmt.Errorf("%s was reported to exist but cannot be read back: it may be scheduled for deletion; restore it (`aws secretsmanager restore-secret --secret-id %s`) or wait and re-run", name, name)
		}
		return got, false, nil
	default:
		return nil, false, fmt.Errorf("store %s: %w", name, err)
	}
}

// createOrAdopt creates a secret; when the write fails for now (throttled: a
// fleet starting at once throttles creates; a 5xx; a lost answer) it
// re-reads first (the write may have succeeded, or another node created the
// secret meanwhile; reads have a far larger quota) and reports ErrExist if it
// now exists, else tries again after a jittered backoff, until ctx ends.
func (b *bootstrapper) createOrAdopt(ctx context.Context, name, value string) error {
	backoff := 100 * time.Millisecond
	var last error // the last real cause, for when the deadline ends the wait
	for {
		err := b.f.Store.Create(ctx, b.names.Secret(name, value))
		if ctx.Err() != nil && last != nil {
			return fmt.Errorf("%w (gave up at the command's deadline)", last)
		}
		if !errors.Is(err, secretstore.ErrTemporary) {
			return err
		}
		last = err
		got, gerr := b.f.Store.Get(ctx, []string{name})
		if gerr == nil && got[name] != "" {
			return fmt.Errorf("create %s: %w", name, secretstore.ErrExist)
		}
		wait := backoff/2 + time.Duration(mathrand.Int64N(int64(backoff)))
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up at the command's deadline)", err)
		case <-time.After(wait):
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// readPatiently reads the fleet's state; a read throttled even after the
// client's own retries (a burst of joining nodes reads the finished fleet
// at once) is tried again after a jittered pause, up to patientReads reads
// in all and within the command's deadline. Anything else, an unreachable
// store included, fails at once: only a throttle says that waiting helps.
func (b *bootstrapper) readPatiently(ctx context.Context, sc scope) (*state, error) {
	var st *state
	err := patiently(ctx, func() (err error) {
		st, err = b.f.readState(ctx, sc)
		return err
	})
	return st, err
}

// getPatiently is Store.Get, patient as readPatiently is.
func getPatiently(ctx context.Context, s secretstore.Store, names []string) (map[string]string, error) {
	var got map[string]string
	err := patiently(ctx, func() (err error) {
		got, err = s.Get(ctx, names)
		return err
	})
	return got, err
}

// patientReads bounds the reads of one patient read: a burst passes
// within a few (each already spends its client's retries, up to about
// 20 s when the store keeps throttling), and a store that throttles for
// good fails the command well inside its default deadline (2 min).
const patientReads = 3

// patiently runs read until it succeeds, fails other than throttled, or
// patientReads reads or ctx run out (then the last error says why). The
// pauses are drawn from half to one and a half of 500 ms, then 1 s, so
// nodes throttled together do not come back together.
func patiently(ctx context.Context, read func() error) error {
	pause := 500 * time.Millisecond
	for n := 1; ; n++ {
		err := read()
		if err == nil || !errors.Is(err, secretstore.ErrThrottled) || ctx.Err() != nil || n == patientReads {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up at the command's deadline)", err)
		case <-time.After(pause/2 + time.Duration(mathrand.Int64N(int64(pause)))):
		}
		pause *= 2
	}
}
