package certs

import (
	"context"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
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
func ReissueRevoke(ctx context.Context, st secretstore.Store, prefix string, role pki.Role, keyType pki.KeyType, lifetime time.Duration, now time.Time, open KMSOpener) (*ReissuedRevoked, error) {
	res, err := Reissue(ctx, st, prefix, role, keyType, lifetime, now, open)
	if err != nil {
		return nil, err
	}
	out := &ReissuedRevoked{Reissued: *res}
	old, err := pki.ParseSerial(res.OldSerial)
	if err == nil {
		_, err = Revoke(ctx, st, prefix, old, pki.RevocationReasons["superseded"], now, open)
	}
	if err != nil {
		return out, fmt.Errorf("%w (revoke serial %s again): %v", ErrRevokeAfterReissue, res.OldSerial, err)
	}
	out.Revoked = true
	return out, nil
}
