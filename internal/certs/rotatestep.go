package certs

import (
	"context"
	"errors"
	"fmt"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// secretSteps are one rotated secret's parts of a rotation step, which
// runSecretStep drives: what every secret's steps share (version token
// read first; createSecret on a version that holds a value already does
// nothing; setSecret does nothing; testSecret and finishSecret need
// createSecret's value) is said once there.
type secretSteps struct {
	// name is the secret whose version token the rotation makes.
	name string
	// holds is what that version holds, for the messages: "key", "run".
	holds string
	// create is createSecret when version token holds nothing yet.
	create func() (*RotationResult, error)
	// again is createSecret when it holds value; nil: nothing to do.
	again func(value string) (*RotationResult, error)
	// set is what setSecret did (nothing: it says why).
	set string
	// check is testSecret and finishSecret (res.Step says which), version
	// token holding value.
	check func(value string) (*RotationResult, error)
}

// runSecretStep runs res.Step of the rotation of s.name for version
// res.Token.
func runSecretStep(ctx context.Context, vs VersionStore, res *RotationResult, s secretSteps) (*RotationResult, error) {
	token := res.Token
	value, have, err := vs.GetVersion(ctx, s.name, token)
	if err != nil {
		return nil, err
	}
	switch res.Step {
	case RotationCreate:
		if !have {
			return s.create()
		}
		if s.again != nil {
			return s.again(value)
		}
		res.Done = "version " + token + " holds a " + s.holds + " already: nothing to do"
		return res, nil
	case RotationSet:
		res.Done = s.set
		return res, nil
	case RotationTest, RotationFinish:
		if !have {
			return nil, fmt.Errorf("%w: version %s of %s holds no %s: createSecret has not run for this token", ErrUsage, token, s.name, s.holds)
		}
		return s.check(value)
	}
	return nil, fmt.Errorf("%w: unknown rotation step %q (want createSecret, setSecret, testSecret or finishSecret)", ErrUsage, res.Step)
}

// wroteFirst ends a createSecret whose write of version res.Token failed
// with err: when a concurrent run of the step wrote that version first,
// its value is the rotation's and the step is done; any other failure is
// the step's.
func wroteFirst(res *RotationResult, err error) (*RotationResult, error) {
	if errors.Is(err, secretstore.ErrExist) {
		res.Done = "version " + res.Token + " was written by a concurrent run: kept"
		return res, nil
	}
	return nil, err
}
