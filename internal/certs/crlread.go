package certs

import (
	"context"
	"fmt"
)

// StoredCRL is the fleet's CRL as the store holds it now (PEM), verified
// against the store's trust: what a push hands the nodes (internal/push)
// after a command wrote it.
func (fl *Fleet) StoredCRL(ctx context.Context) ([]byte, error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{})
	if err != nil {
		return nil, err
	}
	if s.crlErr != nil {
		return nil, s.crlErr
	}
	crl := s.vals[s.n.CRL()]
	if crl == "" {
		return nil, fmt.Errorf("%s holds no CRL", f.where(s.n.CRL()))
	}
	return []byte(crl), nil
}

// StoredState is what a push hands the nodes after a command that changed
// trust: the store's CRL ("" when none) and its signed trust state (nil
// for a fleet from before it), each verified as an operator reads it.
func (fl *Fleet) StoredState(ctx context.Context) (crl, trust []byte, err error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{})
	if err != nil {
		return nil, nil, err
	}
	if s.trustErr != nil {
		return nil, nil, s.trustErr
	}
	if s.crlErr == nil {
		crl = []byte(s.vals[s.n.CRL()])
	}
	if s.doc != nil && s.docFromStore() {
		trust = []byte(s.vals[s.n.Bundle()])
	}
	if len(crl) == 0 && trust == nil {
		return nil, nil, fmt.Errorf("%s holds neither a CRL nor a signed trust state to push", f.StoreDesc)
	}
	return crl, trust, nil
}
