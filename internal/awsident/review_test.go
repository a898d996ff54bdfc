package awsident_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ehsaniara/joblet/internal/awsident"
)

// An attacker review: the verifier resolves STS for whatever region the
// signature names, in any partition: a verifier configured for the aws
// partition forwards a proof signed for cn-north-1 or us-gov-west-1 to
// that partition's STS, whose accounts are another namespace (idpolicy
// then matches roles and accounts by account ID and name only).
func TestReviewVerifierLeavesItsPartition(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1"}
	for _, region := range []string{"cn-north-1", "us-gov-west-1"} {
		u, err := awsident.Endpoint(context.Background(), cfg, region)
		if err == nil && !strings.HasSuffix(u.Host, ".amazonaws.com") || err == nil && strings.Contains(u.Host, "gov") || err == nil && strings.HasSuffix(u.Host, ".cn") {
			t.Errorf("a verifier in the aws partition would send a proof signed for %s to %s", region, u.Host)
		}
	}
}
