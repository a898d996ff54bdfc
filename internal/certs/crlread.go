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
