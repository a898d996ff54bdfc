package test

import (
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/test/harness"
)

// --kms-key-id, --replica-regions and --tag reach every secret joblet
// creates; a node in a replica region reads from its own region; existing
// secrets can be replicated later.
func TestSecretsManagerOptions(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	key := strings.TrimSpace(awsCLI(t, "kms", "create-key", "--query", "KeyMetadata.KeyId", "--output", "text"))
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--kms-key-id", key, "--replica-regions", "us-west-2", "--tag", "team=platform")
	for _, name := range []string{"joblet/ca-cert", "joblet/ca-key", "joblet/client-key-reader"} {
		d := awsCLI(t, "secretsmanager", "describe-secret", "--secret-id", name, "--query", "[KmsKeyId, ReplicationStatus[0].Region, Tags[?Key=='team'].Value | [0]]", "--output", "text")
		if f := strings.Fields(d); len(f) != 3 || f[0] != key || f[1] != "us-west-2" || f[2] != "platform" {
			t.Errorf("%s: kms key, replica region, tag = %q", name, d)
		}
	}

	// A node in the replica region, told so by its instance metadata.
	imds := harness.StartIMDS(t, "i-0000000000000099", "us-west-2")
	proxy := harness.StartAWSProxy(t, moto.URL)
	home, _, env2 := smNode(t, proxy.URL, "AWS_REGION=", "AWS_DEFAULT_REGION=", "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds)
	harness.MustRun(t, env2, joblet, "certs", "bootstrap")
	if !proxy.SawRegion("us-west-2") || proxy.SawRegion("us-east-1") {
		t.Fatal("the node in us-west-2 did not read from its own region only")
	}
	if serverConfig(t, home).Security.CACert != readStore(t, "joblet")["joblet/ca-cert"] {
		t.Fatal("the replica region served another CA")
	}

	// Existing secrets, replicated on request.
	r := harness.MustRun(t, env, joblet, "certs", "replicate", "--replica-regions", "eu-west-1")
	if !strings.Contains(r.Stdout, "replicated 13 secrets to eu-west-1") {
		t.Fatalf("%s", r)
	}
	regions := awsCLI(t, "secretsmanager", "describe-secret", "--secret-id", "joblet/ca-cert", "--query", "ReplicationStatus[].Region", "--output", "text")
	if !strings.Contains(regions, "eu-west-1") {
		t.Fatalf("replicas: %s", regions)
	}

	// The policies say so, with bootstrap's flag names.
	p := harness.MustRun(t, env, joblet, "certs", "iam-policy", "--for", "bootstrap", "--replica-regions", "us-west-2", "--kms-key-id", "arn:aws:kms:us-east-1:1:key/"+key).Stdout
	for _, want := range []string{"secretsmanager:ReplicateSecretToRegions", "kms:GenerateDataKey", "kms:ViaService"} {
		if !strings.Contains(p, want) {
			t.Errorf("bootstrap policy lacks %s", want)
		}
	}
	if p := harness.MustRun(t, env, joblet, "certs", "iam-policy", "--for", "node", "--kms-key-id", "arn:k").Stdout; strings.Contains(p, "GenerateDataKey") || !strings.Contains(p, "kms:Decrypt") {
		t.Errorf("node policy with a KMS key:\n%s", p)
	}
	// The spellings before (--replicas, --kms-key-arn) still work, with a notice.
	old := harness.MustRun(t, env, joblet, "certs", "iam-policy", "--for", "bootstrap", "--replicas", "--kms-key-arn", "arn:aws:kms:us-east-1:1:key/"+key)
	if old.Stdout != p || !strings.Contains(old.Stderr, "--kms-key-arn has been deprecated, use --kms-key-id") || !strings.Contains(old.Stderr, "--replicas has been deprecated") {
		t.Errorf("deprecated spellings:\n%s", old)
	}
}

// A replica region made in the middle of a CA rotation holds everything a
// node reads there, the rotation's cross certificate included, with the
// primary region's values.
func TestReplicateMidRotation(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "begin")
	harness.MustRun(t, env, joblet, "certs", "revoke", "--serial", "1234")
	harness.MustRun(t, env, joblet, "certs", "replicate", "--replica-regions", "eu-west-1")
	for _, name := range (certs.Names{Prefix: "joblet"}).Node() {
		if name == (certs.Names{Prefix: "joblet"}).IdentityPolicy() {
			continue // optional (issue 26): this fleet has none
		}
		primary := strings.TrimSpace(awsCLI(t, "secretsmanager", "get-secret-value", "--secret-id", name, "--query", "SecretString", "--output", "text"))
		replica := strings.TrimSpace(awsCLI(t, "secretsmanager", "get-secret-value", "--region", "eu-west-1", "--secret-id", name, "--query", "SecretString", "--output", "text"))
		if primary == "" || replica != primary {
			t.Errorf("%s: the replica in eu-west-1 holds %q, the primary %q", name, replica, primary)
		}
	}
}
