package test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// The re-issue records in Secrets Manager (moto): `certs reissue` leaves
// its own for the grace, a later prune past the grace removes the
// completed ones (the grace counted from Secrets Manager's own dates), and
// what someone who can write the store plants under client-reissue/
// (a record for the role's current certificate, names joblet never gives,
// a record holding no pair) stays; no other secret changes.
func TestPruneReissueRecordsSecretsManager(t *testing.T) {
	moto := resetMoto(t)
	ctx := context.Background()
	joblet, _ := harness.Bins(t)
	home := t.TempDir()
	env := harness.Env(append(harness.AWSEnv(moto.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+home)...)
	harness.MustRun(t, env, joblet, "certs", "init", "--address", "127.0.0.1:50051", "--out", filepath.Join(home, "configs"))
	c := smClient(moto.URL)
	list := func() []string {
		var out []string
		res, err := c.ListSecrets(ctx, &sm.ListSecretsInput{MaxResults: aws.Int32(100)})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.SecretList {
			if n := aws.ToString(e.Name); strings.HasPrefix(n, "joblet/client-reissue/") {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	values := func() map[string]string {
		out := map[string]string{}
		res, err := c.ListSecrets(ctx, &sm.ListSecretsInput{MaxResults: aws.Int32(100)})
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range res.SecretList {
			if n := aws.ToString(e.Name); !strings.HasPrefix(n, "joblet/client-reissue/") {
				v, err := c.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: e.Name, VersionStage: aws.String("AWSCURRENT")})
				if err != nil {
					t.Fatal(err)
				}
				out[n] = aws.ToString(v.SecretString)
			}
		}
		return out
	}
	var first struct{ OldSerial, NewSerial string }
	out := harness.MustRun(t, env, joblet, "certs", "reissue", "--role", "developer", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &first); err != nil {
		t.Fatal(err, out)
	}
	harness.MustRun(t, env, joblet, "certs", "reissue", "--role", "developer")
	if got := list(); len(got) != 2 {
		t.Fatalf("after two re-issues: %v", got)
	}
	// What a store writer plants: a record for the current certificate,
	// names joblet never gives, a record that holds no pair.
	cur, err := c.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String("joblet/client-cert-developer")})
	if err != nil {
		t.Fatal(err)
	}
	serial := certSerialHex(t, aws.ToString(cur.SecretString))
	planted := []string{"joblet/client-reissue/developer-" + serial, "joblet/client-reissue/developer-0" + serial,
		"joblet/client-reissue/nosuchrole-01", "joblet/client-reissue/reader-1234", "JOBLET/client-reissue/developer-01"}
	for _, n := range planted {
		if _, err := c.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(n), SecretString: aws.String("planted")}); err != nil {
			t.Fatal(err)
		}
	}
	before := values()
	// Within the grace (the default) nothing goes.
	if out := harness.MustRun(t, env, joblet, "certs", "prune").Stdout; !strings.Contains(out, "0 re-issue record(s) removed") {
		t.Fatalf("prune within the grace:\n%s", out)
	}
	// Past a grace of 2 s, by Secrets Manager's dates.
	time.Sleep(3 * time.Second)
	var res certs.Pruned
	out = harness.MustRun(t, env, joblet, "certs", "prune", "--grace", "2s", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatal(err, out)
	}
	if res.Removed != 2 {
		t.Fatalf("removed %d, want the two completed records:\n%s", res.Removed, out)
	}
	left := list()
	for _, n := range planted[:4] {
		if !slices.Contains(left, n) {
			t.Errorf("the planted %s was removed", n)
		}
	}
	if slices.Contains(left, "joblet/client-reissue/developer-"+strings.TrimLeft(first.OldSerial, "0")) {
		t.Errorf("the first re-issue's record stayed: %v", left)
	}
	after := values()
	for n, v := range before {
		if after[n] != v {
			t.Errorf("%s changed", n)
		}
	}
	if len(after) != len(before) {
		t.Errorf("secrets outside the records: %d before, %d after", len(before), len(after))
	}
}

// certSerialHex is a PEM certificate's serial as a record's name holds it.
func certSerialHex(t *testing.T, pemText string) string {
	t.Helper()
	c, err := pki.ParseCert([]byte(pemText))
	if err != nil {
		t.Fatal(err)
	}
	return c.SerialNumber.Text(16)
}

// A fleet with replicas (--replica-regions): the re-issue's record is
// created with its replica, and prune removes both (Secrets Manager
// deletes no secret that still has replicas).
func TestPruneReplicatedRecord(t *testing.T) {
	moto := resetMoto(t)
	ctx := context.Background()
	joblet, _ := harness.Bins(t)
	home := t.TempDir()
	env := harness.Env(append(harness.AWSEnv(moto.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+home, "JOBLET_REPLICA_REGIONS=us-west-2")...)
	harness.MustRun(t, env, joblet, "certs", "init", "--address", "127.0.0.1:50051", "--out", filepath.Join(home, "configs"))
	harness.MustRun(t, env, joblet, "certs", "reissue", "--role", "reader")
	west := sm.New(sm.Options{Region: "us-west-2", BaseEndpoint: aws.String(moto.URL), Credentials: smClient(moto.URL).Options().Credentials})
	replicas := func() []string {
		res, err := west.ListSecrets(ctx, &sm.ListSecretsInput{MaxResults: aws.Int32(100)})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, e := range res.SecretList {
			if strings.Contains(aws.ToString(e.Name), "/client-reissue/") {
				out = append(out, aws.ToString(e.Name))
			}
		}
		return out
	}
	if got := replicas(); len(got) != 1 {
		t.Fatalf("the record's replicas in us-west-2: %v", got)
	}
	if out := harness.MustRun(t, env, joblet, "certs", "prune", "--grace", "0").Stdout; !strings.Contains(out, "1 re-issue record(s) removed") {
		t.Fatalf("prune:\n%s", out)
	}
	if got := replicas(); len(got) != 0 {
		t.Fatalf("after prune, replicas in us-west-2: %v", got)
	}
}
