package certs

// The join: a node reading only what a node may read, and becoming a
// member of a fleet that has a node-issuing CA.

import (
	"context"
	"errors"
	"fmt"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// fleetFound is what the join's read found in a store it could not join
// from: what the full path that follows does first.
type fleetFound int

const (
	// foundSome: read the whole state (a fleet half made or made before
	// the node-issuing CA, or a policy from before it).
	foundSome fleetFound = iota
	// foundEmpty: nothing at all; the full path starts from nothing
	// without reading again (its first create is the claim that tells a
	// node whether another is creating the fleet already).
	foundEmpty
	// foundCreating: a new fleet's CA without its node-issuing CA yet;
	// the full path waits for the node creating it.
	foundCreating
)

// join makes this node a member of a fleet that has a node-issuing CA,
// reading only what a node may read (nodeScope, one store call): the
// root certificate, the node-issuing pair, the trust and the CRL. st, when
// not nil, is that read already made (the fleet check's). It returns the
// shared material, or an error, when the store holds such a fleet;
// otherwise neither, and what it found for the full path, which then
// creates, completes or serves the fleet as before.
func (b *bootstrapper) join(ctx context.Context, st *state) (sh *shared, found fleetFound, err error) {
	if st == nil {
		// Anchored: a node of a burst under quotas (its batch read
		// throttled) that finds no root certificate reads no further; the
		// rest can make nothing it could join, and the claim that follows
		// decides the rest.
		sc := nodeScope
		sc.anchored = true
		st, err = b.readPatiently(ctx, sc)
		if errors.Is(err, secretstore.ErrAccessDenied) {
			// A node policy from before the node-issuing CA: the full
			// path reads what that policy allowed.
			return nil, foundSome, nil
		}
		if err != nil {
			return nil, foundSome, err
		}
	}
	n := b.names
	// Before anything else (and anything written): a pinned join goes on
	// only with the pinned root, and never creates a fleet.
	if err := checkPin(b.f.Pin, st); err != nil {
		return nil, foundSome, err
	}
	if len(st.vals) == 0 {
		return nil, foundEmpty, nil
	}
	if st.vals[n.CACert()] == "" || st.vals[n.NodeCACert()] == "" || st.vals[n.NodeCAKey()] == "" {
		// A new fleet's CA without its node-issuing CA (written last) and
		// no trust bundle yet: a first node is most likely creating it
		// now. The full path waits for it without reading it all first.
		if st.ca != nil && pki.AllowsIntermediates(st.ca) && st.vals[n.Bundle()] == "" {
			return nil, foundCreating, nil
		}
		return nil, foundSome, nil
	}
	if err := st.trusted(); err != nil {
		return nil, foundSome, err
	}
	if err := st.rootVouched(); err != nil {
		return nil, foundSome, err
	}
	if err := pki.CheckCA(st.ca, b.f.Now()); err != nil {
		return nil, foundSome, fmt.Errorf("%w: %s: %v. Rotate the CA (`joblet certs rotate-ca`), or replace it with FORCE_REGENERATE=true", ErrInconsistentStore, n.CACert(), err)
	}
	if st.nodeCAErr != nil {
		return nil, foundSome, st.nodeCAErr
	}
	if b.key.InKMS() && !b.waited { // a node that waited for a burst's creator was given the key to create the fleet, and lost
		msg := "JOBLET_CA_KMS_KEY_ID (--ca-kms-key-id) is set, but a joining node signs nothing with the root's key (it signs with the node-issuing CA): it is not used here, and the node needs no KMS access"
		b.f.Log.Info(msg)
		b.res.Warnings = append(b.res.Warnings, msg)
	}
	sh = &shared{ca: pki.CA{Cert: st.ca}, caPEM: st.vals[n.CACert()], issuer: *st.nodeCA, trust: st.trust, crlPEM: st.vals[n.CRL()], doc: st.docValue()}
	b.res.Items = append(b.res.Items,
		item("CA Certificate", Retrieved, b.where(n.CACert()), st.ca),
		item("Node-issuing CA", Retrieved, b.where(n.NodeCACert()), st.nodeCA.Cert))
	return sh, foundSome, nil
}
