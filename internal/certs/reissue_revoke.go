package certs

import (
	"context"
	"fmt"

	"github.com/ehsaniara/joblet/internal/pki"
)

// ReissuedRevoked is what ReissueRevoke did.
type ReissuedRevoked struct {
	Reissued
	// Revoked: the replaced certificate is on the CRL (reason superseded).
	Revoked bool `json:"revokedOld"`
}

// ErrRevokeAfterReissue: the new certificate is in place but the old one
// is not revoked yet; revoking its serial again completes the operation.
var ErrRevokeAfterReissue = fmt.Errorf("the new certificate is in place, but revoking the old one failed")

// ReissueRevoke re-issues role's client certificate and key (Reissue), then
// revokes the replaced certificate as superseded. When the revocation
// fails the result is still returned, with an error wrapping
// ErrRevokeAfterReissue that names the serial to revoke.
func (fl *Fleet) ReissueRevoke(ctx context.Context, role pki.Role) (*ReissuedRevoked, error) {
	res, err := fl.Reissue(ctx, role)
	if err != nil {
		return nil, err
	}
	out := &ReissuedRevoked{Reissued: *res}
	old, err := pki.ParseSerial(res.OldSerial)
	if err == nil {
		_, err = fl.Revoke(ctx, old, pki.RevocationReasons["superseded"])
	}
	if err != nil {
		return out, fmt.Errorf("%w (revoke serial %s again): %v", ErrRevokeAfterReissue, res.OldSerial, err)
	}
	out.Revoked = true
	return out, nil
}
