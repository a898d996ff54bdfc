package awssm

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Versions named by the caller: a Secrets Manager rotation function is
// handed a ClientRequestToken, the id of the version its rotation makes,
// and every step it runs is keyed by it (AWS runs a step again when it
// failed or timed out). The Store interface names versions by stage only;
// these name them by id.

// GetVersion reads the version id of name. ok is false when that version
// does not exist or holds no value yet (RotateSecret makes an empty one
// for the function to fill).
func (s *Store) GetVersion(ctx context.Context, name, id string) (string, bool, error) {
	res, err := s.api.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String(name), VersionId: aws.String(id)}, s.notice)
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return "", false, nil
		}
		return "", false, s.explain(err, "GetSecretValue", name)
	}
	if res.SecretString == nil {
		return "", false, fmt.Errorf("version %s of secret %s has no SecretString: joblet stores PEM text; was it written as binary?", id, name)
	}
	return *res.SecretString, true, nil
}

// PutVersion writes value as version id of name, labelled stage only.
// A version keeps its value: Secrets Manager accepts the same value again
// (a no-op) and refuses another one, which is errors.Is(err, ErrExist).
func (s *Store) PutVersion(ctx context.Context, name, id, value string, stage secretstore.Stage) error {
	_, err := s.api.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String(name), ClientRequestToken: aws.String(id),
		SecretString: aws.String(value), VersionStages: []string{string(stage)}})
	if err != nil {
		var exists *smtypes.ResourceExistsException
		if errors.As(err, &exists) {
			return fmt.Errorf("put version %s of %s: %w", id, name, secretstore.ErrExist)
		}
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("put version %s of %s: %w", id, name, secretstore.ErrNotExist)
		}
		return s.explain(err, "PutSecretValue", name)
	}
	return nil
}

// Stages maps each stage label of name to the id of the version it is on.
func (s *Store) Stages(ctx context.Context, name string) (map[secretstore.Stage]string, error) {
	return s.versions(ctx, name)
}

// MoveStage puts label on version id, taking it from the version that
// holds it (Secrets Manager labels the version that loses AWSCURRENT
// AWSPREVIOUS). Nothing happens when id holds it already.
func (s *Store) MoveStage(ctx context.Context, name string, label secretstore.Stage, id string) error {
	return s.retryMove(ctx, name, func(v map[secretstore.Stage]string) error {
		if v[label] == id {
			return nil
		}
		return s.move(ctx, name, label, v[label], id)
	})
}

// Schedule has Secrets Manager rotate name with the function lambdaARN on
// schedule (a schedule expression: rate(7 days), cron(...)), without
// rotating now: Secrets Manager tests the function (its testSecret step)
// on a copy of the current value, and rotates at the first scheduled time.
func (s *Store) Schedule(ctx context.Context, name, lambdaARN, schedule string) error {
	_, err := s.api.RotateSecret(ctx, &sm.RotateSecretInput{SecretId: aws.String(name), RotationLambdaARN: aws.String(lambdaARN),
		RotationRules: &smtypes.RotationRulesType{ScheduleExpression: aws.String(schedule)}, RotateImmediately: aws.Bool(false)})
	if err != nil {
		return s.explain(err, "RotateSecret", name)
	}
	return nil
}

// Remove deletes name with every version, at once (no recovery window: a
// claim holding a key that is current elsewhere must not linger). A
// secret replicated to other regions (--replica-regions) cannot be
// deleted while it has replicas: they are removed first (the replicas'
// regions read from the secret itself), then the secret.
func (s *Store) Remove(ctx context.Context, name string) error {
	err := s.deleteNow(ctx, name)
	// The refusal's type is not documented: moto answers
	// InvalidParameterException; either is looked into.
	var req *smtypes.InvalidRequestException
	var param *smtypes.InvalidParameterException
	if err == nil || !(errors.As(err, &req) || errors.As(err, &param)) {
		return s.removed(err, name)
	}
	d, derr := s.api.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(name)})
	if derr != nil || len(d.ReplicationStatus) == 0 {
		return s.removed(err, name) // not what refused it: the first error
	}
	var regions []string
	for _, r := range d.ReplicationStatus {
		regions = append(regions, aws.ToString(r.Region))
	}
	if _, err := s.api.RemoveRegionsFromReplication(ctx, &sm.RemoveRegionsFromReplicationInput{SecretId: aws.String(name), RemoveReplicaRegions: regions}); err != nil {
		return s.explain(err, "RemoveRegionsFromReplication", name)
	}
	return s.removed(s.deleteNow(ctx, name), name)
}

func (s *Store) deleteNow(ctx context.Context, name string) error {
	_, err := s.api.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: aws.String(name), ForceDeleteWithoutRecovery: aws.Bool(true)})
	return err
}

// removed is Remove's answer for DeleteSecret's err: a secret that does
// not exist is removed.
func (s *Store) removed(err error, name string) error {
	var nf *smtypes.ResourceNotFoundException
	if err == nil || errors.As(err, &nf) {
		return nil
	}
	return s.explain(err, "DeleteSecret", name)
}

// Rotation reads how name is rotated.
func (s *Store) Rotation(ctx context.Context, name string) (secretstore.Rotation, error) {
	d, err := s.api.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(name)}, s.notice)
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return secretstore.Rotation{}, fmt.Errorf("describe %s: %w", name, secretstore.ErrNotExist)
		}
		return secretstore.Rotation{}, s.explain(err, "DescribeSecret", name)
	}
	r := secretstore.Rotation{Enabled: aws.ToBool(d.RotationEnabled), Function: aws.ToString(d.RotationLambdaARN), LastRotated: d.LastRotatedDate, NextRotation: d.NextRotationDate}
	if rr := d.RotationRules; rr != nil {
		switch {
		case aws.ToString(rr.ScheduleExpression) != "":
			r.Schedule = aws.ToString(rr.ScheduleExpression)
		case aws.ToInt64(rr.AutomaticallyAfterDays) > 0:
			r.Schedule = fmt.Sprintf("every %d days", aws.ToInt64(rr.AutomaticallyAfterDays))
		}
	}
	for id, stages := range d.VersionIdsToStages {
		if slices.Contains(stages, string(secretstore.RotationPending)) && !slices.Contains(stages, string(secretstore.Current)) {
			r.Pending = id
		}
	}
	return r, nil
}

var _ secretstore.RotationReader = (*Store)(nil)
