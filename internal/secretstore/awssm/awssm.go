// Package awssm is the AWS Secrets Manager implementation of
// secretstore.Store.
package awssm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// API is the part of the Secrets Manager client this store calls; tests
// wrap it to count calls.
type API interface {
	BatchGetSecretValue(context.Context, *sm.BatchGetSecretValueInput, ...func(*sm.Options)) (*sm.BatchGetSecretValueOutput, error)
	GetSecretValue(context.Context, *sm.GetSecretValueInput, ...func(*sm.Options)) (*sm.GetSecretValueOutput, error)
	CreateSecret(context.Context, *sm.CreateSecretInput, ...func(*sm.Options)) (*sm.CreateSecretOutput, error)
	PutSecretValue(context.Context, *sm.PutSecretValueInput, ...func(*sm.Options)) (*sm.PutSecretValueOutput, error)
	ListSecretVersionIds(context.Context, *sm.ListSecretVersionIdsInput, ...func(*sm.Options)) (*sm.ListSecretVersionIdsOutput, error)
	UpdateSecretVersionStage(context.Context, *sm.UpdateSecretVersionStageInput, ...func(*sm.Options)) (*sm.UpdateSecretVersionStageOutput, error)
	ReplicateSecretToRegions(context.Context, *sm.ReplicateSecretToRegionsInput, ...func(*sm.Options)) (*sm.ReplicateSecretToRegionsOutput, error)
	ListSecrets(context.Context, *sm.ListSecretsInput, ...func(*sm.Options)) (*sm.ListSecretsOutput, error)
	RotateSecret(context.Context, *sm.RotateSecretInput, ...func(*sm.Options)) (*sm.RotateSecretOutput, error)
	DescribeSecret(context.Context, *sm.DescribeSecretInput, ...func(*sm.Options)) (*sm.DescribeSecretOutput, error)
	DeleteSecret(context.Context, *sm.DeleteSecretInput, ...func(*sm.Options)) (*sm.DeleteSecretOutput, error)
	RemoveRegionsFromReplication(context.Context, *sm.RemoveRegionsFromReplicationInput, ...func(*sm.Options)) (*sm.RemoveRegionsFromReplicationOutput, error)
}

var _ API = (*sm.Client)(nil)

// Store keeps secrets in Secrets Manager as SecretString (PEM text), so the
// operator's `aws secretsmanager get-secret-value ... | openssl x509` works.
type Store struct {
	api      API
	endpoint string
	log      *slog.Logger
	create   CreateOptions
	// batchDenied remembers that BatchGetSecretValue is not allowed, so a
	// process asks only once before reading secret by secret.
	batchDenied atomic.Bool
	// throttledAt is when a call of this store was last throttled past
	// its client's retries (Throttled), in Unix nanoseconds; 0: never.
	throttledAt atomic.Int64
}

// throttleMemory is how long a throttle makes Throttled true: a burst's
// span, not a long-running server's life.
const throttleMemory = time.Minute

var _ secretstore.Store = (*Store)(nil)

// CreateOptions apply to every secret the store creates.
type CreateOptions struct {
	KMSKeyID       string            // a customer key instead of aws/secretsmanager
	ReplicaRegions []string          // replicate each new secret there (disaster recovery)
	Tags           map[string]string // added to joblet's own tags
}

// New wraps a client; endpoint names the service in error messages.
// Replicate is how `joblet certs replicate` reaches Secrets Manager.
var _ secretstore.Replicator = (*Store)(nil)

func New(api API, endpoint string, log *slog.Logger) *Store {
	if log == nil {
		log = slog.Default()
	}
	return &Store{api: api, endpoint: endpoint, log: log}
}

// Throttled reports whether Secrets Manager has throttled a call of this
// store past the client's retries (a throttled batch read that fell back to
// per-secret reads included): a bootstrap that sees it knows it started in
// a burst, and spends the small quotas (creates, batch reads) sparingly.
func (s *Store) Throttled() bool {
	at := s.throttledAt.Load()
	return at != 0 && time.Since(time.Unix(0, at)) < throttleMemory
}

// WithCreateOptions sets what Create adds to every new secret.
func (s *Store) WithCreateOptions(o CreateOptions) *Store {
	s.create = o
	return s
}

// Replicate replicates existing secrets to the configured replica regions.
func (s *Store) Replicate(ctx context.Context, names []string) error {
	if len(s.create.ReplicaRegions) == 0 {
		return fmt.Errorf("no replica regions given: use --replica-regions r1,r2")
	}
	for _, n := range names {
		in := &sm.ReplicateSecretToRegionsInput{SecretId: aws.String(n)}
		for _, r := range s.create.ReplicaRegions {
			in.AddReplicaRegions = append(in.AddReplicaRegions, smtypes.ReplicaRegionType{Region: aws.String(r)})
		}
		if _, err := s.api.ReplicateSecretToRegions(ctx, in); err != nil {
			return s.explain(err, "ReplicateSecretToRegions", n)
		}
	}
	return nil
}

// batchLimit is BatchGetSecretValue's maximum SecretIdList length.
const batchLimit = 20

// batchMin is the fewest names read with BatchGetSecretValue. Its quota is
// 100 requests/s per account and region, not adjustable, against 10,000/s
// for GetSecretValue: a few names (a node's periodic refresh reads four:
// the CA pair, the trust bundle, the CRL) cost less of the quota one by one,
// and leave the batch quota to joins.
const batchMin = 5

// Get reads the current versions in one BatchGetSecretValue call per 20
// names (from batchMin names up). Where that call is denied (a least-
// privilege policy may allow only GetSecretValue) or fails for now
// (throttled: its quota is the first to run out when a fleet starts at once;
// a 5xx or a broken connection) it reads each secret with GetSecretValue,
// which the SDK retries with backoff: the first alone, then the rest at once
// (one round trip, not one per name).
func (s *Store) Get(ctx context.Context, names []string) (map[string]string, error) {
	return s.get(ctx, names, false)
}

var _ secretstore.Anchored = (*Store)(nil)

// GetAnchored is Get, except that when the batch read cannot serve (denied,
// or failed for now: throttled in a burst) it reads names[0] first, and
// reads nothing more when it is missing (secretstore.Anchored): a node of a
// burst that finds no fleet spends one GetSecretValue, not one per name.
func (s *Store) GetAnchored(ctx context.Context, names []string) (map[string]string, error) {
	return s.get(ctx, names, true)
}

func (s *Store) get(ctx context.Context, names []string, anchored bool) (map[string]string, error) {
	out := make(map[string]string, len(names))
	for start := 0; start < len(names); start += batchLimit {
		chunk := names[start:min(start+batchLimit, len(names))]
		if !s.batchDenied.Load() && len(chunk) >= batchMin {
			err := s.batchGet(ctx, chunk, out, anchored)
			if err == nil {
				continue
			}
			switch {
			case errors.Is(err, secretstore.ErrTemporary) && ctx.Err() == nil:
				s.log.Debug("BatchGetSecretValue failed for now; reading secrets one by one", "cause", err)
			case errors.Is(err, ErrAccessDenied) && deniedAction(err, "BatchGetSecretValue"):
				s.batchDenied.Store(true)
				s.log.Info("secretsmanager:BatchGetSecretValue is not allowed; reading secrets one by one", "cause", err)
			default:
				return nil, err
			}
		}
		// One by one: the first alone (a store that keeps throttling
		// fails it, and nothing more is asked; an anchored read ends when
		// it is missing), then the rest at once, in one round trip.
		v, ok, err := s.getOne(ctx, chunk[0], secretstore.Current)
		if err != nil {
			return nil, err
		}
		if ok {
			out[chunk[0]] = v
		} else if anchored && start == 0 {
			return map[string]string{}, nil // no anchor: nothing more to read
		}
		if err := s.getEach(ctx, chunk[1:], out); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// getEach reads each of names with its own GetSecretValue, all at once,
// into out; the error of the first name (in order) that failed, if any.
func (s *Store) getEach(ctx context.Context, names []string, out map[string]string) error {
	type got struct {
		v   string
		ok  bool
		err error
	}
	res := make([]got, len(names))
	var wg sync.WaitGroup
	for i, name := range names {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, ok, err := s.getOne(ctx, name, secretstore.Current)
			res[i] = got{v, ok, err}
		}()
	}
	wg.Wait()
	for i, r := range res {
		if r.err != nil {
			return r.err
		}
		if r.ok {
			out[names[i]] = r.v
		}
	}
	return nil
}

// batchGet reads names with BatchGetSecretValue; anchored: the caller's
// fallback is one read when the anchor is missing (GetAnchored).
func (s *Store) batchGet(ctx context.Context, names []string, out map[string]string, anchored bool) error {
	in := &sm.BatchGetSecretValueInput{SecretIdList: names}
	for {
		// Two attempts only: when the batch quota is exhausted, per-secret
		// reads (a quota a hundred times larger, and full retries) serve
		// better than waiting. Once this store has been throttled (a
		// burst), one: the retry's wait (up to 2 s) buys nothing the
		// per-secret reads do not. An anchored read, one too: its fallback
		// is a single read where no fleet is there yet (the first look of
		// every node of a burst), where the retry would hold each of them,
		// the one that goes on to create the fleet included, for a second
		// on average.
		attempts := 2
		if s.Throttled() || anchored {
			attempts = 1
		}
		res, err := s.api.BatchGetSecretValue(ctx, in, s.notice, func(o *sm.Options) { o.RetryMaxAttempts = attempts })
		if err != nil {
			return s.explain(err, "BatchGetSecretValue", names...)
		}
		for _, v := range res.SecretValues {
			name := aws.ToString(v.Name)
			if !slices.Contains(v.VersionStages, string(secretstore.Current)) {
				// An answer that is not AWSCURRENT (moto's default
				// version after a stage move): ask for the current one.
				val, ok, err := s.getOne(ctx, name, secretstore.Current)
				if err != nil {
					return err
				}
				if ok {
					out[name] = val
				}
				continue
			}
			if v.SecretString == nil {
				return fmt.Errorf("secret %s has no SecretString: joblet stores PEM text; was it written as binary?", name)
			}
			out[name] = *v.SecretString
		}
		for _, e := range res.Errors {
			code := aws.ToString(e.ErrorCode)
			if code == "ResourceNotFoundException" {
				continue // missing: absent from the map
			}
			if pendingDeletion(code, aws.ToString(e.Message)) {
				s.log.Warn("a secret is scheduled for deletion: read as missing", "secret", aws.ToString(e.SecretId))
				continue
			}
			return s.explain(&secretError{code: code, msg: aws.ToString(e.Message)}, "BatchGetSecretValue", aws.ToString(e.SecretId))
		}
		if aws.ToString(res.NextToken) == "" { // moto answers "" for "no more"
			return nil
		}
		in.NextToken = res.NextToken
	}
}

// getOne asks for the stage explicitly: moto answers a request without one
// with a stale version after a stage move.
func (s *Store) getOne(ctx context.Context, name string, stage secretstore.Stage) (string, bool, error) {
	in := &sm.GetSecretValueInput{SecretId: aws.String(name), VersionStage: aws.String(string(stage))}
	res, err := s.api.GetSecretValue(ctx, in, s.notice)
	// The SDK does not retry an answer cut short (it fails to decode it);
	// a read is safe to repeat, so repeat it a few times.
	for try := 1; err != nil && try < 4 && cutShort(err) && ctx.Err() == nil; try++ {
		time.Sleep(time.Duration(try) * 200 * time.Millisecond)
		res, err = s.api.GetSecretValue(ctx, in, s.notice)
	}
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return "", false, nil
		}
		// A secret scheduled for deletion reads as missing: every reader
		// already treats a missing trust state or CRL as "keep what is
		// held", so a DeleteSecret stops no refresh and no revoke.
		var ir *smtypes.InvalidRequestException
		if errors.As(err, &ir) && pendingDeletion("InvalidRequestException", ir.ErrorMessage()) {
			s.log.Warn("a secret is scheduled for deletion: read as missing", "secret", name)
			return "", false, nil
		}
		return "", false, s.explain(err, "GetSecretValue", name)
	}
	if res.SecretString == nil {
		return "", false, fmt.Errorf("secret %s has no SecretString: joblet stores PEM text; was it written as binary?", name)
	}
	return *res.SecretString, true, nil
}

// Create stores a new secret with its description and tags.
func (s *Store) Create(ctx context.Context, sec secretstore.Secret) error {
	in := &sm.CreateSecretInput{Name: aws.String(sec.Name), SecretString: aws.String(sec.Value)}
	if sec.Description != "" {
		in.Description = aws.String(sec.Description)
	}
	tags := map[string]string{}
	for k, v := range s.create.Tags {
		tags[k] = v
	}
	for k, v := range sec.Tags {
		tags[k] = v
	}
	for _, k := range slices.Sorted(maps.Keys(tags)) {
		in.Tags = append(in.Tags, smtypes.Tag{Key: aws.String(k), Value: aws.String(tags[k])})
	}
	if s.create.KMSKeyID != "" {
		in.KmsKeyId = aws.String(s.create.KMSKeyID)
	}
	for _, r := range s.create.ReplicaRegions {
		in.AddReplicaRegions = append(in.AddReplicaRegions, smtypes.ReplicaRegionType{Region: aws.String(r)})
	}
	// Few attempts: a create that fails for now goes back to the caller,
	// which re-reads first (it may have succeeded, or another node created
	// it) before trying again. Once this store has been throttled (a
	// burst), one: the client's retry waits up to 2 s, where the caller
	// paces its own tries to the create quota (a throttled create was not
	// made).
	attempts := 2
	if s.Throttled() {
		attempts = 1
	}
	_, err := s.api.CreateSecret(ctx, in, s.notice, func(o *sm.Options) { o.RetryMaxAttempts = attempts })
	if err != nil {
		var exists *smtypes.ResourceExistsException
		if errors.As(err, &exists) {
			return fmt.Errorf("create secret %s: %w", sec.Name, secretstore.ErrExist)
		}
		return s.explain(err, "CreateSecret", sec.Name)
	}
	return nil
}

// Put adds a version that becomes AWSCURRENT; Secrets Manager moves the
// version it replaces to AWSPREVIOUS.
func (s *Store) Put(ctx context.Context, name, value string) error {
	_, err := s.api.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)})
	if err != nil {
		var nf *smtypes.ResourceNotFoundException
		if errors.As(err, &nf) {
			return fmt.Errorf("put secret %s: %w", name, secretstore.ErrNotExist)
		}
		return s.explain(err, "PutSecretValue", name)
	}
	return nil
}

// secretError is an error reported for one secret inside a batch answer.
type secretError struct{ code, msg string }

func (e *secretError) Error() string     { return e.code + ": " + e.msg }
func (e *secretError) ErrorCode() string { return e.code }

// cutShort reports an answer that broke off mid-body.
func cutShort(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "unexpected EOF") || strings.Contains(msg, "deserialization failed")
}

// pendingDeletion: an answer about a secret scheduled for deletion.
func pendingDeletion(code, msg string) bool {
	return code == "InvalidRequestException" && strings.Contains(strings.ToLower(msg), "delet") // AWS: "marked for deletion"; moto: "marked deleted"
}
