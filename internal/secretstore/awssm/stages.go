package awssm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// GetStage reads the version labelled stage of each name.
func (s *Store) GetStage(ctx context.Context, names []string, stage secretstore.Stage) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range names {
		v, ok, err := s.getOne(ctx, n, stage)
		if err != nil {
			return nil, err
		}
		if ok {
			out[n] = v
		}
	}
	return out, nil
}

// stagedID is the version id PutPending gives value.
func stagedID(value string) string {
	sum := sha256.Sum256([]byte(value))
	return ownVersion + hex.EncodeToString(sum[:16])
}

// PutPending adds value as a version labelled JOBLET_PENDING only. Its
// ClientRequestToken (the version id) is derived from the value, so writing
// the same value again is a no-op for Secrets Manager: labels included. A
// version that lost JOBLET_PENDING (DropPending: a rotation aborted, then begun
// again with the CA its record names) gets the label back here.
func (s *Store) PutPending(ctx context.Context, name, value string) error {
	id := stagedID(value)
	_, err := s.api.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value),
		VersionStages: []string{string(secretstore.Pending)}, ClientRequestToken: aws.String(id)})
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("put pending %s: %w", name, secretstore.ErrNotExist)
		}
		return s.explain(err, "PutSecretValue", name)
	}
	return s.retryMove(ctx, name, func(v map[secretstore.Stage]string) error {
		if v[secretstore.Pending] == id {
			return nil
		}
		return s.move(ctx, name, secretstore.Pending, v[secretstore.Pending], id)
	})
}

// versions maps each stage label of name to its version id.
func (s *Store) versions(ctx context.Context, name string) (map[secretstore.Stage]string, error) {
	out := map[secretstore.Stage]string{}
	in := &sm.ListSecretVersionIdsInput{SecretId: aws.String(name)}
	for {
		res, err := s.api.ListSecretVersionIds(ctx, in)
		if err != nil {
			return nil, s.explain(err, "ListSecretVersionIds", name)
		}
		for _, v := range res.Versions {
			for _, st := range []secretstore.Stage{secretstore.Current, secretstore.Pending, secretstore.RotationPending, secretstore.Previous} {
				if slices.Contains(v.VersionStages, string(st)) {
					out[st] = aws.ToString(v.VersionId)
				}
			}
		}
		if aws.ToString(res.NextToken) == "" { // moto answers "" for "no more"
			return out, nil
		}
		in.NextToken = res.NextToken
	}
}

// move puts label on version to (removing it from its holder), or removes
// it when to is empty.
func (s *Store) move(ctx context.Context, name string, label secretstore.Stage, from, to string) error {
	in := &sm.UpdateSecretVersionStageInput{SecretId: aws.String(name), VersionStage: aws.String(string(label))}
	if to != "" {
		in.MoveToVersionId = aws.String(to)
	}
	if from != "" && from != to {
		in.RemoveFromVersionId = aws.String(from)
	}
	if in.MoveToVersionId == nil && in.RemoveFromVersionId == nil {
		return nil
	}
	if _, err := s.api.UpdateSecretVersionStage(ctx, in); err != nil {
		return s.explain(err, "UpdateSecretVersionStage", name)
	}
	return nil
}

// retryMove re-reads the labels and applies f again when a concurrent
// operator moved a label between our read and our update.
func (s *Store) retryMove(ctx context.Context, name string, f func(map[secretstore.Stage]string) error) error {
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		var v map[secretstore.Stage]string
		if v, err = s.versions(ctx, name); err != nil {
			return err
		}
		if err = f(v); err == nil {
			return nil
		}
	}
	return err
}

// Promote moves AWSCURRENT to the pending version; Secrets Manager labels
// the version that loses it AWSPREVIOUS.
func (s *Store) Promote(ctx context.Context, name string) error {
	return s.retryMove(ctx, name, func(v map[secretstore.Stage]string) error {
		p := v[secretstore.Pending]
		if p == "" {
			return nil
		}
		if p != v[secretstore.Current] { // else an earlier run moved it already
			if err := s.move(ctx, name, secretstore.Current, v[secretstore.Current], p); err != nil {
				return err
			}
		}
		return s.move(ctx, name, secretstore.Pending, p, "")
	})
}

// Demote gives AWSCURRENT back to the previous version and labels the one
// that held it JOBLET_PENDING.
func (s *Store) Demote(ctx context.Context, name string) error {
	return s.retryMove(ctx, name, func(v map[secretstore.Stage]string) error {
		cur, prev := v[secretstore.Current], v[secretstore.Previous]
		if prev == "" {
			return fmt.Errorf("demote %s: no AWSPREVIOUS version to return to", name)
		}
		if err := s.move(ctx, name, secretstore.Current, cur, prev); err != nil {
			return err
		}
		return s.move(ctx, name, secretstore.Pending, v[secretstore.Pending], cur)
	})
}

// DropPending removes the JOBLET_PENDING label.
func (s *Store) DropPending(ctx context.Context, name string) error {
	return s.retryMove(ctx, name, func(v map[secretstore.Stage]string) error {
		return s.move(ctx, name, secretstore.Pending, v[secretstore.Pending], "")
	})
}

// ownVersion is the prefix of the version ids PutPending makes (the
// value's hash): never a ClientRequestToken of Secrets Manager's own
// rotation, which is a UUID.
const ownVersion = secretstore.StagedVersionPrefix

// AdoptLegacyPending moves the staged label of before to its own: for each
// of names (secrets under one prefix) where no version is labelled
// JOBLET_PENDING and a version PutPending made (its id is "joblet-" and
// its value's hash, stagedID) is labelled AWSPENDING but not AWSCURRENT (a
// rotation begun before the label existed), that version gets
// JOBLET_PENDING and loses AWSPENDING.
// A version of Secrets Manager's own rotation is never touched. One
// ListSecrets call when nothing is to move; it returns the names moved.
func (s *Store) AdoptLegacyPending(ctx context.Context, names []string) ([]string, error) {
	legacy := map[string]string{}
	err := s.listStages(ctx, names, func(name string, versions map[string][]string) {
		own, old := false, ""
		for id, stages := range versions {
			own = own || slices.Contains(stages, string(secretstore.Pending))
			if strings.HasPrefix(id, ownVersion) && slices.Contains(stages, string(secretstore.LegacyPending)) && !slices.Contains(stages, string(secretstore.Current)) {
				old = id
			}
		}
		if !own && old != "" {
			legacy[name] = old
		}
	})
	if err != nil {
		return nil, err
	}
	var moved []string
	for _, name := range names {
		id := legacy[name]
		if id == "" {
			continue
		}
		// PutPending's id is its value's hash: a version with another
		// value under such an id was named by someone else (a rotation
		// run's ClientRequestToken, or the empty version Secrets Manager
		// makes for one), and staging it would make a rotation nobody began.
		value, ok, err := s.GetVersion(ctx, name, id)
		if err != nil {
			return moved, err
		}
		if !ok || value == "" || stagedID(value) != id {
			continue
		}
		if err := s.move(ctx, name, secretstore.Pending, "", id); err != nil {
			return moved, err
		}
		if err := s.move(ctx, name, secretstore.LegacyPending, id, ""); err != nil {
			return moved, err
		}
		moved = append(moved, name)
	}
	return moved, nil
}
