package awssm_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
)

// AdoptLegacyPending moves AWSPENDING to JOBLET_PENDING only on a version
// PutPending made: its id is the prefix and its value's hash. A version
// whose id merely starts "joblet-" (a ClientRequestToken anyone allowed
// RotateSecret, or to put a value, chooses: a rotation run's version, or
// the empty one Secrets Manager makes for a run) is left alone: adopted,
// it became the staged ca-key or CA certificate of a rotation nobody began.
func TestReview27AdoptsOnlyStagedVersions(t *testing.T) {
	moto.Reset(t)
	ctx := context.Background()
	c := client()
	s := awssm.New(c, "moto", nil)
	staged := func(v string) string {
		sum := sha256.Sum256([]byte(v))
		return secretstore.StagedVersionPrefix + hex.EncodeToString(sum[:16])
	}
	put := func(name, id, value string) {
		t.Helper()
		if _, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String(name), ClientRequestToken: aws.String(id),
			SecretString: aws.String(value), VersionStages: []string{string(secretstore.LegacyPending)}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"p/legacy", "p/run"} {
		if err := s.Create(ctx, secretstore.Secret{Name: name, Value: "current"}); err != nil {
			t.Fatal(err)
		}
	}
	put("p/legacy", staged("new root"), "new root")                                        // a begin of an earlier version
	put("p/run", "joblet-0123456789abcdef0123456789abcdef", "joblet root rotation run: x") // a run's token
	moved, err := s.AdoptLegacyPending(ctx, []string{"p/legacy", "p/run"})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(moved, []string{"p/legacy"}) {
		t.Fatalf("moved %v, want only p/legacy", moved)
	}
	got, err := s.GetStage(ctx, []string{"p/legacy", "p/run"}, secretstore.Pending)
	if err != nil {
		t.Fatal(err)
	}
	if got["p/legacy"] != "new root" || got["p/run"] != "" {
		t.Fatalf("staged after the move: %q", got)
	}
}
