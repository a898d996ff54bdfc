package awsident_test

import (
	"context"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ehsaniara/joblet/internal/awsident"
)

// Attacker review of issue 26: the proof's credential scope names the
// region, and the verifier sends the proof to sts.REGION.amazonaws.com for
// any label shaped like a region. Some such labels are not regions but
// other services' names, under which a customer names the first label:
// sts.s3-accelerate.amazonaws.com, sts.s3-external-1.amazonaws.com and
// sts.s3-us-west-2.amazonaws.com are the S3 bucket "sts" (virtual-hosted,
// legacy dash endpoints), whoever owns it. Nothing a caller sends may
// widen the hosts the issuer calls beyond STS's: a region must be shaped
// as AWS names regions (us-east-1, us-gov-west-1, us-isob-east-1).
func TestReview26RegionNamesAnotherService(t *testing.T) {
	cfg := aws.Config{Region: "us-east-1"}
	for _, region := range []string{"s3-accelerate", "s3-external-1", "s3-us-west-2", "s3-website-us-east-1"} {
		if u, err := awsident.Endpoint(context.Background(), cfg, region); err == nil {
			t.Errorf("region %q: the verifier would send a proof to %s", region, u.Host)
		}
	}
	for _, region := range []string{"us-east-1", "eu-central-2", "ap-southeast-5", "il-central-1", "mx-central-1"} {
		if u, err := awsident.Endpoint(context.Background(), cfg, region); err != nil || !strings.HasPrefix(u.Host, "sts.") {
			t.Errorf("region %s: %v %v", region, u, err)
		}
	}
	for _, region := range []string{"cn-north-1", "us-gov-west-1"} {
		if _, err := awsident.Endpoint(context.Background(), aws.Config{Region: region}, region); err != nil {
			t.Errorf("region %s from its own partition: %v", region, err)
		}
	}
}

// The AWS European Sovereign Cloud (eusc-de-east-1) is a partition of its
// own (aws-eusc, amazonaws.eu), as the SDK's partition table says;
// PartitionOf takes it for aws, so a verifier in the aws partition sends
// proofs signed for it to STS in another partition.
func TestReview26SovereignCloudIsAnotherPartition(t *testing.T) {
	if p := awsident.PartitionOf("eusc-de-east-1"); p != "aws-eusc" {
		t.Errorf("eusc-de-east-1 is in partition %s, want aws-eusc", p)
	}
	if u, err := awsident.Endpoint(context.Background(), aws.Config{Region: "us-east-1"}, "eusc-de-east-1"); err == nil {
		t.Errorf("a verifier in the aws partition would send a proof to %s", u.Host)
	}
}
