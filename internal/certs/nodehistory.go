package certs

// A node that joins while an older trust state or CRL was put back in the
// store takes it: its join is one read of the current versions. So a
// running node looks once per process (its first refresh) at the history
// of both secrets, where Secrets Manager keeps the newer versions that were
// put over, and takes the newest it can verify from what it holds, as it
// would from the current version: a node that joined during a rollback
// enforces the fleet's newest revocations from its first refresh on, not
// from the next state an operator signs. A policy without
// secretsmanager:ListSecretVersionIds (the node policy before it) skips it.

import (
	"context"
	"errors"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// newestFromHistory makes s hold the newest trust state and CRL in the
// store's history that verify from the trust s now holds (after
// holdTrust), when newer than the current versions. It reports whether the
// history was read (or cannot be), so the caller does it once.
func (f *Fleet) newestFromHistory(ctx context.Context, s *state) bool {
	h, ok := f.Store.(secretstore.Historian)
	if !ok {
		return true
	}
	n := s.n
	denied := func(err error) bool {
		if errors.Is(err, secretstore.ErrAccessDenied) {
			f.Log.Debug("this node's policy does not show the store's version history; it takes the current versions only", "error", err)
			return true
		}
		f.Log.Warn("could not read the store's version history (tried again at the next refresh)", "error", err)
		return false
	}
	if s.doc != nil && s.vals[n.Bundle()] != "" {
		revoked := revokedSerials(s.vals[n.CRL()])
		held := s.doc
		best, bestRaw, err := newestTrust(ctx, h, n.Bundle(), s.now, false, func(v secretstore.Version) (*pki.TrustState, error) {
			return pki.VerifyTrust([]byte(v.Value), n.Prefix, held.RootCerts(), held, revoked)
		})
		if err != nil {
			return denied(err)
		}
		if best != nil && best.Version > s.doc.Version {
			f.Log.Warn("the store's trust state is older than one in its history (put back without the root key?): taking the newest", "secret", n.Bundle(), "current", s.doc.Version, "newest", best.Version)
			s.adoptDoc(best, bestRaw)
		}
	}
	if s.vals[n.CRL()] != "" {
		newest, pem, _, err := crlHistory(ctx, h, n.CRL(), s.trust)
		if err != nil {
			return denied(err)
		}
		if cur, _ := pki.PeekCRLNumber([]byte(s.vals[n.CRL()])); newest != nil && cur != nil && newest.Number.Cmp(cur) > 0 {
			f.Log.Warn("the store's CRL is older than one in its history (put back without the root key?): taking the newest", "secret", n.CRL(), "current", numText(cur), "newest", numText(newest.Number))
			s.vals[n.CRL()] = pem
			s.useTrust(s.trust)
		}
	}
	return true
}
