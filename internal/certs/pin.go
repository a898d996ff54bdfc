package certs

// Pinning the root at join: a machine joining a fleet (`certs bootstrap`,
// `rnx config init`) given the root's fingerprint refuses a store whose
// root is another, before it writes anything, with no store call beyond
// the join's own read (the root, the bundle and the cross certificate are
// in it). Without a pin the first join trusts what it finds and says so.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// ErrPinMismatch: the store's root is not the one the pin names.
var ErrPinMismatch = errors.New("the store's root CA is not the pinned one")

// pinFlag names where a pin comes from, for messages.
const pinFlag = "--ca-fingerprint (JOBLET_CA_FINGERPRINT)"

// checkPin refuses s unless pin is nil, names s's root, or names the root
// that cross-signed it in a rotation (the outgoing root, still in the
// bundle, vouching for the current one by the cross certificate). A pin
// older than that (the rotation finished and the cross certificate is
// gone) is refused: the chain across many rotations comes with the signed
// trust state.
func checkPin(pin *pki.Pin, s *state) error {
	if pin == nil {
		return nil
	}
	if s.ca == nil {
		why := s.caErr
		if why == nil {
			why = errors.New("no CA")
		}
		return fmt.Errorf("%w: %s pins the root %s, but the store holds no usable root (%v). Check the store, its region and --prefix; nothing was written",
			ErrPinMismatch, pinFlag, pin, why)
	}
	// A signed trust state: the pin must reach its signer through its
	// lineage (however many rotations ago the pinned root was current),
	// and the trust is then what it verifies to from the pin alone.
	if bundle := []byte(s.vals[s.n.Bundle()]); pki.IsSignedTrust(bundle) {
		t, err := pki.PeekTrust(bundle, s.n.Prefix)
		var anchor *x509.Certificate
		if err == nil {
			anchor = t.PinAnchor(*pin)
		}
		if anchor == nil {
			return fmt.Errorf("%w: the store's root is %s, but %s pins %s, a root its signed trust state (%s) never had, in any rotation. This store is not the pinned fleet's; nothing was written",
				ErrPinMismatch, pki.PinOf(s.ca), pinFlag, pin, s.n.Bundle())
		}
		s.parseTrust([]*x509.Certificate{anchor}, nil)
		if s.trustErr != nil {
			return fmt.Errorf("%w: the store's trust state does not verify from the pinned root %s: %v; nothing was written", ErrPinMismatch, pin, s.trustErr)
		}
		return s.rootVouched()
	}
	if pin.Matches(s.ca) {
		return nil
	}
	if s.cross != nil {
		for _, t := range s.trust {
			if pin.Matches(t) && pki.IsCrossOf(s.cross, s.ca, t) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: the store's root is %s, but %s pins %s. This store is not the pinned fleet's (or the pin is from before a CA rotation that has finished: pin the current root, which `joblet certs status` shows); nothing was written",
		ErrPinMismatch, pki.PinOf(s.ca), pinFlag, pin)
}

// noteUnpinned says, once (a node's first bootstrap, joining a fleet it
// did not create), that the root was trusted as found, and how to pin it.
func (b *bootstrapper) noteUnpinned(existing *config.Server, sh *shared) {
	if b.f.Pin != nil || b.o.Force || (existing != nil && existing.Security.CACert != "") || sh.ca.Cert == nil {
		return
	}
	for _, it := range b.res.Items {
		if it.Name == "CA Certificate" && it.Action != Retrieved {
			return // this run made the root: nothing found to trust
		}
	}
	msg := fmt.Sprintf("NO PIN: this node trusts the root CA it found in %s, %s, without checking it against anything: whoever could write that store chose it. "+
		"Give the fingerprint `joblet certs init` printed with --ca-fingerprint or JOBLET_CA_FINGERPRINT to refuse any other; from now on this node keeps this root",
		b.f.StoreDesc, pki.PinOf(sh.ca.Cert))
	b.f.Log.Warn(msg)
	b.res.Warnings = append(b.res.Warnings, msg)
}

// CheckPin reads the store's root as a node would (one store call) and
// refuses it unless it is the Fleet's pinned one (checkPin): for a flow
// that copies the store before it bootstraps from the copy (export).
func (fl *Fleet) CheckPin(ctx context.Context) error {
	if fl.Pin == nil {
		return nil
	}
	f := fl.defaults()
	s, err := f.readState(ctx, nodeScope)
	if err != nil {
		return err
	}
	return checkPin(f.Pin, s)
}
