package test

import (
	"context"
	"fmt"
	"github.com/ehsaniara/joblet/internal/certs"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// iamUser creates a user in moto allowed actions (none: no policy) and
// returns its access key. moto evaluates actions, not resource ARNs, so
// policies here use Resource "*".
func iamUser(t *testing.T, url, name string, actions ...string) (id, secret string) {
	t.Helper()
	if len(actions) == 0 {
		env := harness.Env(harness.AWSEnv(url)...)
		harness.MustRun(t, env, "aws", "iam", "create-user", "--user-name", name)
		f := strings.Fields(harness.MustRun(t, env, "aws", "iam", "create-access-key", "--user-name", name,
			"--query", "AccessKey.[AccessKeyId,SecretAccessKey]", "--output", "text").Stdout)
		return f[0], f[1]
	}
	var quoted []string
	for _, a := range actions {
		quoted = append(quoted, `"secretsmanager:`+a+`"`)
	}
	return iamUserPolicy(t, url, name, `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":[`+strings.Join(quoted, ",")+`],"Resource":"*"}]}`)
}

// Access control enforced by moto's IAM emulation: denied calls fail with
// the action and secret named; a node allowed only GetSecretValue still
// joins, reading secret by secret.
func TestAccessDenied(t *testing.T) {
	t.Parallel()
	// 8 unauthenticated calls set up the users; IAM is enforced after.
	m, err := harness.StartMoto("INITIAL_NO_AUTH_ACTION_COUNT=8")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	joblet, _ := harness.Bins(t)
	fullID, fullKey := iamUser(t, m.URL, "operator", "BatchGetSecretValue", "GetSecretValue", "CreateSecret", "PutSecretValue", "TagResource")
	readID, readKey := iamUser(t, m.URL, "worker", "GetSecretValue")
	noneID, noneKey := iamUser(t, m.URL, "nobody")
	creds := func(id, key string) []string {
		return []string{"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + key}
	}
	stored := func() map[string]string {
		c := sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(m.URL), Credentials: credentials.NewStaticCredentialsProvider(fullID, fullKey, "")})
		v, err := awssm.New(c, "moto", nil).Get(context.Background(), certs.Names{Prefix: "joblet"}.All())
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	home, _, env := smNode(t, m.URL, creds(noneID, noneKey)...)
	r := harness.Run(t, env, joblet, "certs", "bootstrap")
	if r.Code != 1 || !strings.Contains(r.Stderr, "secretsmanager:GetSecretValue on joblet/ca-cert: access denied") {
		t.Fatalf("no permissions: %s", r)
	}
	noFiles(t, home)

	home, _, env = smNode(t, m.URL, creds(readID, readKey)...)
	r = harness.Run(t, env, joblet, "certs", "bootstrap")
	if r.Code != 1 || !strings.Contains(r.Stderr, "secretsmanager:CreateSecret on joblet/ca-key: access denied") ||
		!strings.Contains(r.Stderr, "Allow secretsmanager:CreateSecret") {
		t.Fatalf("read-only first node: %s", r)
	}
	noFiles(t, home)
	if v := stored(); len(v) != 0 {
		t.Fatalf("a denied bootstrap left secrets: %v", v)
	}

	_, _, env = smNode(t, m.URL, creds(fullID, fullKey)...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")

	proxy := harness.StartAWSProxy(t, m.URL)
	home, _, env = smNode(t, proxy.URL, creds(readID, readKey)...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	calls := harness.Count(proxy.Calls())
	t.Logf("joining node without BatchGetSecretValue: %v", calls)
	// What a node reads (the root certificate, the node-issuing pair, the
	// trust bundle, the CRL, the rotation's cross certificate), one by one.
	want := len(certs.Names{Prefix: "joblet"}.Node())
	if calls["BatchGetSecretValue"] != 1 || calls["GetSecretValue"] != want || len(calls) != 2 {
		t.Errorf("calls %v: want one denied batch read, then %d GetSecretValue", calls, want)
	}
	if serverConfig(t, home).Security.CACert != stored()["joblet/ca-cert"] {
		t.Fatal("the worker node does not use the stored CA")
	}
}

func TestStoreUnusable(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)

	cases := []struct {
		name   string
		decide func(string, int) harness.Verdict
		env    []string
		want   []string
		code   int
	}{
		{name: "unreachable", env: []string{"AWS_ENDPOINT_URL_SECRETS_MANAGER=" + harness.ClosedURL},
			want: []string{"Secrets Manager unreachable", "cannot reach Secrets Manager at " + harness.ClosedURL, "connection refused"}, code: 1},
		{name: "throttled", decide: func(string, int) harness.Verdict { return harness.Throttle },
			want: []string{"secretsmanager:GetSecretValue", "throttled by Secrets Manager", "retried with backoff"}, code: 1},
		{name: "no credentials", env: []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY="},
			want: []string{"no AWS credentials", "instance profile"}, code: 1},
		{name: "no region", env: []string{"AWS_REGION=", "AWS_DEFAULT_REGION="},
			want: []string{"needs an AWS region", "EC2_REGION"}, code: 1},
		{name: "store and secrets manager at once", env: []string{"JOBLET_STORE=dir:/tmp/x"},
			want: []string{"contradict"}, code: 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			proxy := harness.StartAWSProxy(t, moto.URL)
			proxy.OnCall(tc.decide, nil)
			home, _, env := smNode(t, proxy.URL, tc.env...)
			r := harness.Run(t, env, joblet, "certs", "bootstrap")
			if r.Code != tc.code {
				t.Fatalf("exit %d, want %d: %s", r.Code, tc.code, r)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.Stderr, w) {
					t.Errorf("message lacks %q: %s", w, r.Stderr)
				}
			}
			noFiles(t, home)
			if v := readStore(t, "joblet"); len(v) != 0 {
				t.Fatalf("store changed: %d secrets", len(v))
			}
			reliability.Record(t, "store faults", "bootstrap, Secrets Manager "+tc.name, fmt.Sprintf("exit %d: %s; no local file, no secret", r.Code, lastLine(r.Stderr)))
			if tc.name == "throttled" {
				// The batch read once (the join's first look is anchored
				// by the root certificate, and a read after the process
				// was throttled gains nothing from the retry's wait), then
				// the root certificate's read retried with backoff until
				// the attempts run out (nothing more is asked); a
				// throttled read of the fleet is made 3 times in all (a
				// burst passes; a store that keeps throttling fails the
				// node).
				if c := harness.Count(proxy.Calls()); c["BatchGetSecretValue"] != 1+1+1 || c["GetSecretValue"] != 3*8 {
					t.Errorf("calls %v: want 3 reads of 1 batch attempt each, each then 8 GetSecretValue attempts", c)
				}
			}
		})
	}
}

// Passing faults are retried: the bootstrap succeeds and the store ends
// consistent.
func TestTransientFaultsAreRetried(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	proxy.OnCall(func(action string, n int) harness.Verdict {
		switch {
		case action == "BatchGetSecretValue" && n < 2:
			return harness.Throttle
		case action == "CreateSecret" && n == 3:
			return harness.ServerError
		}
		return harness.Forward
	}, nil)
	_, _, env := smNode(t, proxy.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	checkStore(t, readStore(t, "joblet"), "joblet")
}

func TestAutoOffEC2IsEmbedded(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL, "USE_SECRETS_MANAGER=auto")
	r := harness.MustRun(t, env, joblet, "certs", "bootstrap")
	if !strings.Contains(r.Stdout, "embedded mode") {
		t.Fatalf("%s", r.Stdout)
	}
	if v := readStore(t, "joblet"); len(v) != 0 {
		t.Fatal("embedded mode wrote to Secrets Manager")
	}
}
