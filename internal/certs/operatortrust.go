package certs

// What an operator's command trusts. A node and a client hold the newest
// trust state they verified; an operator's command holds nothing between
// runs, and the store's current version is whatever its last writer put
// there: a genuine older state put back (twice, so that AWSPREVIOUS holds it
// too) would be re-signed by the next revoke or `trust sign`, and a store
// whose whole root was replaced (cert, key, node-issuing CA, roles and a
// state of its own) would be revoked from and reported on as if it were
// the fleet's. Two things an attacker who can write the store cannot undo:
//   - the pin (--ca-fingerprint, JOBLET_CA_FINGERPRINT): the operator's
//     commands then trust only what the pinned root reaches through the
//     state's lineage, as a joining node does;
//   - the store's version history (Secrets Manager keeps deprecated
//     versions): the newest state in it that verifies wins over an older
//     one put back on top, however often.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// signingSkew bounds how far the signer's clock (a state's issued time)
// and the store's (a version's creation time) may disagree. A state newer
// than one signed at T was signed after T, so the store created it after
// T minus this: a history walk that has verified a state issued at T stops
// at the first version created before that.
const signingSkew = 15 * time.Minute

// operatorTrust settles the trust of an operator's read (s, parsed from
// the operator's anchors): from the pin when the Fleet has one, and from
// the newest state in the store's history (all of it when full: status).
func (f *Fleet) operatorTrust(ctx context.Context, s *state, full bool) error {
	if s.ca == nil {
		return nil
	}
	anchors := s.operatorAnchors()
	if f.Pin != nil {
		anchors = pinAnchors(*f.Pin, s.ca, s.vals[s.n.Bundle()], s.n.Prefix)
		if len(anchors) > 0 {
			s.parseTrust(anchors, nil)
		}
	}
	// A missing secret has no history to read (moto answers 500 for it).
	if h, ok := f.Store.(secretstore.Historian); ok && s.vals[s.n.Bundle()] != "" {
		if err := f.newestInHistory(ctx, h, s, anchors, full); err != nil {
			if !full || !errors.Is(err, secretstore.ErrAccessDenied) {
				return err
			}
			s.historyErr = err
		}
	}
	// The operator's own record: newer than anything the store shows when
	// the secret was deleted and created again with an older state.
	if seen, raw := f.seenState(anchors, revokedSerials(s.vals[s.n.CRL()])); seen != nil && (s.doc == nil || seen.Version > s.doc.Version) && seen.AheadOf(s.now) == "" {
		s.rolledBack = fmt.Sprintf("%s holds an older trust state than version %d, which this operator's machine verified before (%s): the secret was put back, or deleted and created again, without the root key. Operators' commands act on version %d",
			s.n.Bundle(), seen.Version, f.seenPath(), seen.Version)
		f.Log.Warn("the store's trust state is older than the one this operator saw", "problem", s.rolledBack)
		s.adoptDoc(seen, raw)
	}
	f.rememberSeen(s.doc, s.docRaw)
	if f.Pin == nil {
		return nil
	}
	return s.pinnedRoot(*f.Pin)
}

// pinAnchors are the certificates the pin names: the store's root itself,
// or a root of the stored state's lineage.
func pinAnchors(pin pki.Pin, ca *x509.Certificate, bundle, prefix string) []*x509.Certificate {
	if pin.Matches(ca) {
		return []*x509.Certificate{ca}
	}
	if t, err := pki.PeekTrust([]byte(bundle), prefix); err == nil {
		if a := t.PinAnchor(pin); a != nil {
			return []*x509.Certificate{a}
		}
	}
	return nil
}

// pinnedRoot refuses an operator's read whose root the pin does not reach:
// the store's root must be the pinned one, or listed by a state that
// verified from it.
func (s *state) pinnedRoot(pin pki.Pin) error {
	if pin.Matches(s.ca) && (s.doc == nil || s.doc.TrustsKey(s.ca)) {
		return nil
	}
	if s.doc != nil && s.doc.PinAnchor(pin) != nil && s.doc.TrustsKey(s.ca) && s.trustErr == nil {
		return nil
	}
	return fmt.Errorf("%w: the store's root is %s, but %s pins %s and no trust state that root signed, or that its lineage reaches, lists it: the store's root was replaced without a rotation (or the pin is another fleet's). Nothing was signed or written; restore the secrets from their history and find out who wrote them",
		ErrPinMismatch, pki.PinOf(s.ca), pinFlag, pin)
}

// newestInHistory walks the bundle's history, newest created first, and
// makes s trust the newest state that verifies from anchors when it is
// newer than the current one: an older state put back on top is then
// reported (s.rolledBack) and every signer signs from the newest. The walk
// stops, unless full, at a version created too long before the newest
// verified state was signed to be newer than it (signingSkew): two reads at
// rest, whatever an attacker put on top.
func (f *Fleet) newestInHistory(ctx context.Context, h secretstore.Historian, s *state, anchors []*x509.Certificate, full bool) error {
	n := s.n
	revoked := revokedSerials(s.vals[n.CRL()])
	var unverified []secretstore.Version
	var seenRoots []*x509.Certificate // the roots of every state that verified
	pin := f.Pin
	best, bestRaw, err := newestTrust(ctx, h, n.Bundle(), s.now, full, func(v secretstore.Version) (*pki.TrustState, error) {
		if !pki.IsSignedTrust([]byte(v.Value)) {
			return nil, pki.ErrTrustUnsigned
		}
		if len(anchors) == 0 && pin != nil {
			anchors = pinAnchors(*pin, s.ca, v.Value, n.Prefix)
		}
		t, err := pki.VerifyTrust([]byte(v.Value), n.Prefix, anchors, nil, revoked)
		if err != nil {
			if full {
				unverified = append(unverified, v)
			}
			return nil, err
		}
		seenRoots = append(seenRoots, t.RootCerts()...)
		return t, nil
	})
	if err != nil {
		return fmt.Errorf("read the history of %s (to tell an older trust state put back; the operator's policy, `joblet certs iam-policy --for rotation`, grants secretsmanager:ListSecretVersionIds): %w", n.Bundle(), err)
	}
	defer func() { s.foreign = foreignStates(unverified, s.doc, seenRoots, n.Prefix) }()
	if best == nil || (s.doc != nil && best.Version <= s.doc.Version) {
		return nil
	}
	what := "an older state was put back without the root key"
	cur := "no signed trust state a root of the fleet signed"
	if s.doc != nil {
		cur = fmt.Sprintf("version %d", s.doc.Version)
	} else {
		what = "it was written without the root key"
	}
	s.rolledBack = fmt.Sprintf("%s holds %s, but its history holds version %d (signed %s), newer: %s. Operators' commands act on version %d; `joblet certs trust sign` writes it again",
		n.Bundle(), cur, best.Version, best.Issued.UTC().Format(time.RFC3339), what, best.Version)
	f.Log.Warn("the store's trust state is not the newest the fleet signed", "problem", s.rolledBack)
	s.adoptDoc(best, bestRaw)
	return nil
}

// newestTrust walks name's history, newest created first, and returns the
// newest state verify accepts (nil: none), not ahead of now. Unless full,
// it stops at a version created too long before that state was signed to
// be newer (signingSkew).
func newestTrust(ctx context.Context, h secretstore.Historian, name string, now time.Time, full bool, verify func(secretstore.Version) (*pki.TrustState, error)) (*pki.TrustState, string, error) {
	var best *pki.TrustState
	var bestRaw string
	err := h.History(ctx, name, func(v secretstore.Version) bool {
		if !full && best != nil && v.Created.Before(best.Issued.Add(-signingSkew)) {
			return false // created before best was signed: not newer
		}
		t, err := verify(v)
		if err == nil && t.AheadOf(now) == "" && (best == nil || t.Version > best.Version) {
			best, bestRaw = t, v.Value
		}
		return true
	})
	return best, bestRaw, err
}

// adoptDoc makes s trust t (raw, its envelope): a newer state than the
// store's current one, found in its history or the operator's record.
func (s *state) adoptDoc(t *pki.TrustState, raw string) {
	s.doc, s.docRaw = t, raw
	s.useTrust(t.RootCerts())
	s.phase, s.interrupted = phaseOf(s.n, s.pending, len(s.trust))
}

// foreignStates are the times of the states among vals signed by no key of
// doc's roots and lineage, nor by a root some verified state trusted: a
// root other than the fleet's wrote a state (a whole-root swap, or someone
// signing with a key of their own). States of the fleet's earlier roots
// are not (their keys are in the lineage), nor of a CA a rotation began and
// aborted (a verified state trusted it then).
func foreignStates(vals []secretstore.Version, doc *pki.TrustState, seenRoots []*x509.Certificate, prefix string) []time.Time {
	if doc == nil {
		return nil
	}
	keys := append(append(doc.RootCerts(), doc.LineageCerts()...), seenRoots...)
	var out []time.Time
	for _, v := range vals {
		ours := false
		for _, k := range keys {
			if pki.TrustSignedBy([]byte(v.Value), prefix, k) {
				ours = true
				break
			}
		}
		if !ours {
			out = append(out, v.Created)
		}
	}
	return out
}
