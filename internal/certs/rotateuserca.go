package certs

import (
	"context"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// rotateUserCAStep is RotateSecretStep for <prefix>/user-ca, the
// user-issuing CA's certificate and key (one secret), with the contract of
// `joblet certs user-ca --rotate`: people's certificates from the old one
// keep working until they expire (hours), and the issuer signs with the
// new one once it reads it again. The root certifies it; nothing else
// lists it.
//
//   - createSecret: nothing when version token holds a value. Else a new
//     key and its certificate from the root (the user-issuing CA's
//     lifetime), written together as version token, AWSPENDING; a
//     concurrent run that wrote first wins (never a second CA current).
//   - setSecret: nothing (the issuer re-reads the store).
//   - testSecret: the pending value is a user-issuing CA whose key is the
//     certificate's and which chains to a root of the verified trust.
//   - finishSecret: the check again, AWSCURRENT to version token,
//     AWSPENDING off.
func (f *Fleet) rotateUserCAStep(ctx context.Context, vs VersionStore, res *RotationResult) (*RotationResult, error) {
	n := f.names()
	name, token := n.UserCA(), res.Token
	return runSecretStep(ctx, vs, res, secretSteps{
		name:  name,
		holds: "user-issuing CA",
		create: func() (*RotationResult, error) {
			s, err := f.readState(ctx, scope{bothKeys: true, userCA: true})
			if err != nil {
				return nil, err
			}
			if err := s.trusted(); err != nil {
				return nil, err
			}
			if s.vals[name] == "" {
				return nil, fmt.Errorf("%w: the fleet has no user-issuing CA (%s) to rotate: make one with `joblet certs user-ca`", ErrUsage, name)
			}
			root, err := s.signer(ctx, f)
			if err != nil {
				return nil, err
			}
			value, cert, err := mintUserCA(root, f.KeyType, f.Now(), DefaultUserCALifetime)
			if err != nil {
				return nil, err
			}
			if err := vs.PutVersion(ctx, name, token, value, secretstore.RotationPending); err != nil {
				return wroteFirst(res, err)
			}
			info := infoOf(cert)
			res.Issued, res.Done = &info, "a new user-issuing CA (serial "+info.Serial+") from the root is version "+token+" (AWSPENDING)"
			return res, nil
		},
		set: "nothing: the issuer signs with the new user-issuing CA once it reads the store again",
		check: func(value string) (*RotationResult, error) {
			s, err := f.readState(ctx, scope{userCA: true})
			if err != nil {
				return nil, err
			}
			if err := s.trusted(); err != nil {
				return nil, err
			}
			ca, err := userCAFrom(value, s.trust, f.Now())
			if err != nil {
				return nil, fmt.Errorf("%w: version %s of %s: %v", ErrInconsistentStore, token, name, err)
			}
			info := infoOf(ca.Cert)
			res.Issued = &info
			if res.Step == RotationTest {
				res.Done = "the pending user-issuing CA (serial " + info.Serial + ") matches its key and chains to the fleet's root"
				return res, nil
			}
			if value != s.vals[name] {
				if err := vs.MoveStage(ctx, name, secretstore.Current, token); err != nil {
					return nil, err
				}
			}
			if err := vs.MoveStage(ctx, name, secretstore.RotationPending, ""); err != nil {
				return nil, err
			}
			res.Done = "AWSCURRENT is version " + token + " of " + name + " (serial " + info.Serial + ", until " + ca.Cert.NotAfter.UTC().Format(time.RFC3339) + "): the issuer signs with it once it reads the store again; people's certificates from the old one keep working until they expire"
			return res, nil
		},
	})
}
