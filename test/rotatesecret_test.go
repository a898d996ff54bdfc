package test

import (
	"context"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// RotateSecret on the node-issuing CA's key, run by Secrets Manager's own
// rotation engine (moto's, as the launcher corrects it) calling `joblet
// certs rotate-secret` as a Lambda function under the Runtime Interface
// Emulator, on 2 nodes behind HAProxy under traffic:
//
//   - with the root key unreachable (KMS answering 503 to the function),
//     createSecret fails: the secret's current version, the certificate
//     and what the nodes serve stay as they were, and the function logs
//     the line an alarm matches;
//   - Secrets Manager's next attempt (the same token) completes: the key's
//     current version is the token's, node-ca-cert holds its certificate,
//     the nodes move to it on their own refresh, the clients change
//     nothing;
//   - the same rotation again with the same token leaves one new version;
//   - no request fails throughout.
func TestRotateSecretNodeCAUnderTraffic(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	ctx := context.Background()
	joblet, _ := harness.Bins(t)
	rootKey := kmsKey(t, "ECC_NIST_P256")
	f := startRotatorFleet(t, joblet, "--ca-kms-key-id", rootKey)
	opEnv, nodes := f.opEnv, f.nodes
	loop := startLoop(t, f.cfg, 40*time.Millisecond)

	// The function reaches KMS through a proxy that can play "unreachable".
	var kmsDown atomic.Bool
	kmsProxy := harness.StartAWSProxy(t, moto.URL)
	kmsProxy.OnCall(func(string, int) harness.Verdict {
		if kmsDown.Load() {
			return harness.Unavailable
		}
		return harness.Forward
	}, nil)
	fn, fnARN := startRotator(t, joblet, "AWS_ENDPOINT_URL_KMS="+kmsProxy.URL, "AWS_LAMBDA_FUNCTION_TIMEOUT=60")

	c := smClient(moto.URL)
	const keyName, certName = "joblet/node-ca-key", "joblet/node-ca-cert"
	oldCA := served(t, nodes[0].addr)
	verBefore, keyBefore := currentVersion(t, c, keyName)
	_, certBefore := currentVersion(t, c, certName)
	versionsBefore := len(stagesOf(t, c, keyName))
	const token = "7d1f6a52-0c4e-4d0b-9b7a-2f3c9e1d5a01"
	rotate := func() {
		t.Helper()
		if err := rotateBy(c, keyName, token, fnARN, "rate(7 days)"); err != nil {
			t.Fatal(err)
		}
	}

	// The root key unreachable: createSecret fails, nothing current moves.
	kmsDown.Store(true)
	rotate()
	if v, k := currentVersion(t, c, keyName); v != verBefore || k != keyBefore {
		t.Fatalf("after a failed createSecret the key's current version is %s, want %s unchanged", v, verBefore)
	}
	if _, cert := currentVersion(t, c, certName); cert != certBefore {
		t.Fatal("after a failed createSecret node-ca-cert changed")
	}
	alarm := ""
	for _, l := range strings.Split(fn.Proc.Output(), "\n") {
		if strings.Contains(l, "joblet rotation step failed") {
			alarm = l
		}
	}
	if alarm == "" {
		t.Fatalf("no alarm line from the function:\n%s", fn.Proc.Output())
	}
	t.Logf("the function's alarm line: %s", alarm)
	time.Sleep(2 * time.Second) // two refreshes of the nodes
	for i, n := range nodes {
		if got := served(t, n.addr); got != oldCA {
			t.Fatalf("node %d serves from %s after a failed rotation, want %s", i+1, got, oldCA)
		}
	}

	// The operator's status says a rotation did not finish (Attention).
	if st := harness.Run(t, opEnv, joblet, "certs", "status"); st.Code != 1 || !strings.Contains(st.Stdout, "a rotation of joblet/node-ca-key did not finish (version "+token+")") {
		t.Fatalf("certs status after a failed rotation:\n%s", st)
	}

	// Secrets Manager's next attempt, with the same token, completes.
	kmsDown.Store(false)
	rotate()
	ver, key := currentVersion(t, c, keyName)
	if ver != token || key == keyBefore {
		t.Fatalf("after the reattempt the key's current version is %s, want %s with a new key", ver, token)
	}
	_, certPEM := currentVersion(t, c, certName)
	cert, _, err := parsePair(t, certPEM, key)
	if err != nil {
		t.Fatalf("node-ca-cert is not the new key's: %v", err)
	}
	if st := stagesOf(t, c, keyName)[verBefore]; len(st) != 1 || st[0] != "AWSPREVIOUS" {
		t.Fatalf("the old key's labels: %v, want AWSPREVIOUS", st)
	}
	newCA := pki.Fingerprint(cert)
	harness.Eventually(t, 15*time.Second, "every node serving from the rotated node-issuing CA", func() error {
		for i, n := range nodes {
			if got := served(t, n.addr); got != newCA {
				return fmt.Errorf("node %d serves from %s", i+1, got)
			}
		}
		return nil
	})
	moved := time.Now()

	// The same rotation again: one new version, nothing rewritten.
	rotate()
	if n := len(stagesOf(t, c, keyName)); n != versionsBefore+1 {
		t.Fatalf("%d versions of %s after the same rotation twice, want %d", n, keyName, versionsBefore+1)
	}
	if v, k2 := currentVersion(t, c, keyName); v != token || k2 != key {
		t.Fatal("the same rotation again changed the key's current version")
	}
	if _, c2 := currentVersion(t, c, certName); c2 != certPEM {
		t.Fatal("the same rotation again changed node-ca-cert")
	}
	d, err := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(keyName)})
	if err != nil {
		t.Fatal(err)
	}
	if !aws.ToBool(d.RotationEnabled) || d.LastRotatedDate == nil {
		t.Fatalf("describe-secret: RotationEnabled %v, LastRotatedDate %v", aws.ToBool(d.RotationEnabled), d.LastRotatedDate)
	}
	if st := harness.MustRun(t, opEnv, joblet, "certs", "status").Stdout; !strings.Contains(st, "🔁 joblet/node-ca-key: rotated rate(7 days) by "+fnARN+"; last rotated ") {
		t.Fatalf("certs status after the rotation:\n%s", st)
	}
	time.Sleep(time.Until(moved.Add(2 * time.Second)))
	total, failed, rate, errs := loop.finish()
	t.Logf("%d requests (%.0f/s) through haproxy across a failed rotation, its reattempt and a repeat; %d failed", total, rate, failed)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed: %q", failed, total, errs)
	}
	reliability.Record(t, "split issuing power", "RotateSecret on the node-issuing CA's key by Secrets Manager's rotation engine (moto, corrected) calling `joblet certs rotate-secret` under the Lambda Runtime Interface Emulator, 2 nodes behind HAProxy under load: a first attempt with the KMS root key unreachable, the reattempt, then the same token again",
		fmt.Sprintf("%d requests at %.0f/s, %d failed; the failed attempt left the current version and the nodes' CA; the reattempt moved both nodes; the repeat left one new version", total, rate, failed))
}

// Each step of `joblet certs rotate-secret`, run by an operator (the
// command, not the Lambda), again and again with the same token, as
// Secrets Manager retries a step: createSecret twice makes one key and one
// listing; finishSecret stopped between moving AWSCURRENT and writing the
// certificate (PutSecretValue failing) is completed by its next run, and a
// run after that writes nothing. A pending key written without the root key
// (someone with PutSecretValue on the secret) is refused by testSecret and
// finishSecret and never becomes current.
func TestRotateSecretStepsAgain(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	opHome := t.TempDir()
	opEnv := harness.Env(append(harness.AWSEnv(moto.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+opHome)...)
	harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", "127.0.0.1:50051", "--out", filepath.Join(opHome, "configs"))
	c := smClient(moto.URL)
	const keyName, certName, bundle = "joblet/node-ca-key", "joblet/node-ca-cert", "joblet/ca-bundle"
	const token = "0b6f3c1e-5a2d-4f7e-8c9b-1d2e3f4a5b6c"
	step := func(env []string, s, tok string) harness.Result {
		return harness.Run(t, env, joblet, "certs", "rotate-secret", "--secret-id", keyName, "--token", tok, "--step", s)
	}
	mustStep := func(s string) {
		t.Helper()
		if r := step(opEnv, s, token); r.Code != 0 {
			t.Fatalf("%s: %s", s, r)
		}
	}
	verBefore, keyBefore := currentVersion(t, c, keyName)
	_, certBefore := currentVersion(t, c, certName)

	mustStep("createSecret")
	versions := len(stagesOf(t, c, keyName))
	pending, err := c.GetSecretValue(context.Background(), &sm.GetSecretValueInput{SecretId: aws.String(keyName), VersionId: aws.String(token)})
	if err != nil || !strings.Contains(aws.ToString(pending.SecretString), "PRIVATE KEY") {
		t.Fatalf("createSecret wrote no key as version %s: %v", token, err)
	}
	_, bundleAfter := currentVersion(t, c, bundle)
	mustStep("createSecret")
	again, err := c.GetSecretValue(context.Background(), &sm.GetSecretValueInput{SecretId: aws.String(keyName), VersionId: aws.String(token)})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(stagesOf(t, c, keyName)); n != versions || aws.ToString(again.SecretString) != aws.ToString(pending.SecretString) {
		t.Fatalf("createSecret again: %d versions (want %d), same key %v", n, versions, aws.ToString(again.SecretString) == aws.ToString(pending.SecretString))
	}
	if _, b := currentVersion(t, c, bundle); b != bundleAfter {
		t.Fatal("createSecret again re-signed the trust state: it listed a second CA")
	}
	if v, k := currentVersion(t, c, keyName); v != verBefore || k != keyBefore {
		t.Fatal("createSecret changed the current key")
	}
	mustStep("setSecret")
	mustStep("testSecret")
	mustStep("testSecret")

	// finishSecret stopped after AWSCURRENT moved: the certificate write fails.
	proxy := harness.StartAWSProxy(t, moto.URL)
	proxy.OnCall(func(action string, _ int) harness.Verdict {
		if action == "PutSecretValue" {
			return harness.Unavailable
		}
		return harness.Forward
	}, nil)
	cut := harness.Env(append(harness.AWSEnv(proxy.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+opHome)...)
	r := step(cut, "finishSecret", token)
	if r.Code == 0 || !strings.Contains(r.Stderr, "joblet rotation step failed") {
		t.Fatalf("finishSecret with the certificate write failing: %s", r)
	}
	if v, _ := currentVersion(t, c, keyName); v != token {
		t.Fatalf("the key's current version %s: the failure was meant to come after the move", v)
	}
	if _, cert := currentVersion(t, c, certName); cert != certBefore {
		t.Fatal("node-ca-cert written although PutSecretValue failed")
	}
	if st := stagesOf(t, c, keyName)[token]; !slices.Contains(st, "AWSPENDING") {
		t.Fatalf("after a finishSecret cut between its writes the version's labels are %v: AWSPENDING must stay for the retry", st)
	}
	mustStep("finishSecret")
	if st := stagesOf(t, c, keyName)[token]; len(st) != 1 || st[0] != "AWSCURRENT" {
		t.Fatalf("after the completing finishSecret the version's labels are %v, want AWSCURRENT alone", st)
	}
	_, key := currentVersion(t, c, keyName)
	_, certPEM := currentVersion(t, c, certName)
	_, k, err := parsePair(t, certPEM, key)
	if err != nil {
		t.Fatalf("after the completing finishSecret node-ca-cert is not the new key's: %v", err)
	}
	certVersions := len(stagesOf(t, c, certName))
	mustStep("finishSecret")
	if n := len(stagesOf(t, c, certName)); n != certVersions {
		t.Fatalf("finishSecret again wrote node-ca-cert (%d versions, had %d)", n, certVersions)
	}

	// A pending key nobody listed: refused, never current.
	planted, err := pki.GenerateKey(pki.KeyTypeOf(k), nil)
	if err != nil {
		t.Fatal(err)
	}
	pem, _ := pki.EncodeKey(planted)
	const token2 = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
	if _, err := c.PutSecretValue(context.Background(), &sm.PutSecretValueInput{SecretId: aws.String(keyName), ClientRequestToken: aws.String(token2),
		SecretString: aws.String(string(pem)), VersionStages: []string{"AWSPENDING"}}); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"testSecret", "finishSecret"} {
		if r := step(opEnv, s, token2); r.Code == 0 || !strings.Contains(r.Stderr, "not one the signed trust state") {
			t.Fatalf("%s of a planted pending key: %s", s, r)
		}
	}
	if v, _ := currentVersion(t, c, keyName); v != token {
		t.Fatalf("after a planted key's finishSecret the current version is %s, want %s", v, token)
	}
}

// `joblet certs iam-policy --for rotator` is the rotation function's
// policy: every call of two whole rotations, the node-issuing CA's and a
// role's (the four steps, run as the operator runs them, against moto with
// IAM enforced), is inside it, and it grants no write to the root or the
// CRL.
func TestRotateSecretIAMPolicy(t *testing.T) {
	t.Parallel()
	iam := startRotatorIAM(t, 6)
	m, rotator, opID, opKey, fnID, fnKey := iam.m, iam.rotator, iam.opID, iam.opKey, iam.fnID, iam.fnKey
	joblet, _ := harness.Bins(t)
	proxy := harness.StartAWSProxy(t, m.URL)
	home := t.TempDir()
	opEnv := harness.Env(append(harness.AWSEnv(m.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+home, "AWS_ACCESS_KEY_ID="+opID, "AWS_SECRET_ACCESS_KEY="+opKey)...)
	harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", "127.0.0.1:50051", "--out", filepath.Join(home, "configs"))
	fnEnv := harness.Env(append(harness.AWSEnv(proxy.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+t.TempDir(), "JOBLET_SEEN_DIR=off",
		"AWS_ACCESS_KEY_ID="+fnID, "AWS_SECRET_ACCESS_KEY="+fnKey)...)
	// The root's key too: a run that begins a rotation (the root's runs
	// make rotate-ca steps, so the function holds the root's power).
	for _, secret := range []string{"joblet/node-ca-key", "joblet/client-key-developer", "joblet/ca-key"} {
		for _, s := range []string{"createSecret", "setSecret", "testSecret", "finishSecret"} {
			harness.MustRun(t, fnEnv, joblet, "certs", "rotate-secret", "--secret-id", secret, "--token", "5c4b3a29-1807-4f6e-9d5c-4b3a29180746", "--step", s)
		}
	}
	checkFlow(t, "rotator", rotator, proxy.Recorded())
	if st := harness.MustRun(t, opEnv, joblet, "certs", "rotate-ca", "status").Stdout; !strings.Contains(st, "begun") {
		t.Fatalf("after the root's begin run under the rotator policy:\n%s", st)
	}
	// What it may not do: remove a secret of the fleet but a retired
	// root's rotation record, or write outside its fleet's prefix.
	for _, s := range []string{"joblet/ca-key", "joblet/ca-cert", "joblet/crl", "joblet/ca-bundle", "joblet/client-reissue/developer-01"} {
		if allows(rotator, "DeleteSecret", s) {
			t.Errorf("the rotator policy allows removing %s", s)
		}
	}
	for _, s := range []string{"other/ca-key", "jobletx/ca-cert"} {
		if allows(rotator, "PutSecretValue", s) || allows(rotator, "UpdateSecretVersionStage", s) || allows(rotator, "CreateSecret", s) {
			t.Errorf("the rotator policy allows writing %s, outside its fleet", s)
		}
	}
}

// RotateSecret on every role's client key by Secrets Manager's rotation
// engine (moto's, corrected) calling `joblet certs rotate-secret` under the
// Lambda Runtime Interface Emulator: each role's current pair becomes a new
// matching pair of that role from the root (the contract `certs reissue`
// keeps: configs from before keep working, here against a running node,
// until they expire or are revoked); the same token again leaves one new
// version; every key-holding secret the function rotates then shows its
// schedule in describe-secret, and every one still holds a value a node or
// a client can use.
func TestRotateSecretRoleCertificates(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	ctx := context.Background()
	joblet, _ := harness.Bins(t)
	opEnv, out, _ := startOneNode(t, joblet)
	before := filepath.Join(out, "rnx-config-developer.yml")
	harness.Eventually(t, 15*time.Second, "node up", func() error { return oneRequest(before) })

	fn, fnARN := startRotator(t, joblet)
	c := smClient(moto.URL)
	names := map[pki.Role][2]string{}
	for _, r := range pki.Roles {
		key, cert := "joblet/client-key-"+string(r), "joblet/client-cert-"+string(r)
		if r == pki.Admin {
			key, cert = "joblet/client-key", "joblet/client-cert"
		}
		names[r] = [2]string{key, cert}
	}
	rotate := func(secret, token string) {
		t.Helper()
		if err := rotateBy(c, secret, token, fnARN, "rate(30 days)"); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range pki.Roles {
		key, cert := names[r][0], names[r][1]
		_, oldCert := currentVersion(t, c, cert)
		token := fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1)
		rotate(key, token)
		kv, keyPEM := currentVersion(t, c, key)
		cv, certPEM := currentVersion(t, c, cert)
		if kv != token || cv != token || certPEM == oldCert {
			t.Fatalf("%s: current versions %s and %s after the rotation, want %s with a new certificate:\n%s", r, kv, cv, token, fn.Proc.Output())
		}
		crt, _, err := parsePair(t, certPEM, keyPEM)
		if err != nil {
			t.Fatalf("%s: the rotated pair does not match: %v", r, err)
		}
		if got, err := pki.RoleOf(crt); err != nil || got != r {
			t.Fatalf("%s: the rotated certificate's role is %v (%v)", r, got, err)
		}
		versions := len(stagesOf(t, c, key))
		rotate(key, token)
		if v := len(stagesOf(t, c, key)); v != versions {
			t.Fatalf("%s: %d versions after the same rotation again, want %d", r, v, versions)
		}
		if _, again := currentVersion(t, c, cert); again != certPEM {
			t.Fatalf("%s: the same rotation again changed the certificate", r)
		}
	}
	// The contract reissue keeps: a config from before keeps working.
	if err := oneRequest(before); err != nil {
		t.Fatalf("the developer config from before the rotation: %v", err)
	}
	// Every secret the function rotates has its schedule, and a usable value.
	for _, secret := range []string{"joblet/client-key", "joblet/client-key-maintainer", "joblet/client-key-developer", "joblet/client-key-reader"} {
		d, err := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(secret)})
		if err != nil {
			t.Fatal(err)
		}
		if !aws.ToBool(d.RotationEnabled) || d.RotationRules == nil || aws.ToString(d.RotationRules.ScheduleExpression) != "rate(30 days)" {
			t.Fatalf("%s: RotationEnabled %v, rules %+v", secret, aws.ToBool(d.RotationEnabled), d.RotationRules)
		}
	}
	harness.MustRun(t, opEnv, joblet, "certs", "status")
}

// `joblet certs schedule --function-arn ARN`, the documented scheduling
// command: every secret the rotation function rotates gets its schedule,
// shown by `aws secretsmanager describe-secret`; nothing rotates now
// (Secrets Manager tests the function's testSecret on a copy of each
// current value, which passes); every value is still one a node can use (a
// node bootstraps and serves, a role config from before works); `--show`
// lists them.
func TestRotateSecretSchedule(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	opHome := t.TempDir()
	opEnv := harness.Env(append(harness.AWSEnv(moto.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+opHome)...)
	out := filepath.Join(opHome, "configs")
	home, port, env := smNode(t, moto.URL)
	harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", fmt.Sprintf("127.0.0.1:%d", port), "--out", out)
	fn, fnARN := startRotator(t, joblet)
	c := smClient(moto.URL)
	// Every secret that holds a private key: the user-issuing CA and the
	// root's key too.
	harness.MustRun(t, opEnv, joblet, "certs", "user-ca")
	secrets := []string{"joblet/node-ca-key", "joblet/client-key", "joblet/client-key-maintainer", "joblet/client-key-developer", "joblet/client-key-reader", "joblet/user-ca", "joblet/ca-key"}
	before := map[string]string{}
	for _, s := range secrets {
		before[s], _ = currentVersion(t, c, s)
	}

	harness.MustRun(t, opEnv, joblet, "certs", "schedule", "--function-arn", fnARN)
	for _, s := range secrets {
		var d struct {
			RotationEnabled   bool
			RotationLambdaARN string
			RotationRules     struct{ ScheduleExpression string }
		}
		if err := json.Unmarshal([]byte(awsCLI(t, "secretsmanager", "describe-secret", "--secret-id", s)), &d); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"joblet/node-ca-key": "rate(7 days)", "joblet/user-ca": "rate(90 days)", "joblet/ca-key": "rate(90 days)"}[s]
		if want == "" {
			want = "rate(30 days)"
		}
		if !d.RotationEnabled || d.RotationLambdaARN != fnARN || d.RotationRules.ScheduleExpression != want {
			t.Fatalf("describe-secret %s: %+v, want enabled, %s, %s", s, d, fnARN, want)
		}
		if v, _ := currentVersion(t, c, s); v != before[s] {
			t.Fatalf("%s rotated by the scheduling command", s)
		}
		if n := len(stagesOf(t, c, s)); n < 1 {
			t.Fatalf("%s has no version", s)
		}
	}
	if got := strings.Count(fn.Proc.Output(), "joblet rotation step done"); got != len(secrets) || strings.Contains(fn.Proc.Output(), "rotation step failed") {
		t.Fatalf("%d testSecret steps done, want %d, none failed:\n%s", got, len(secrets), fn.Proc.Output())
	}
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	n := fleetNode{home: home, addr: fmt.Sprintf("127.0.0.1:%d", port), env: env}
	n.proc = harness.Start(t, env, joblet, "server", "--config", n.config())
	harness.Eventually(t, 15*time.Second, "a node serving after the schedules", func() error {
		return oneRequest(filepath.Join(out, "rnx-config-developer.yml"))
	})
	// Exit 1: a user-issuing CA and no identity policy yet (nobody logs in).
	r := harness.Run(t, opEnv, joblet, "certs", "status")
	st := r.Stdout
	if r.Code > 1 || !strings.Contains(st, "🔁 joblet/node-ca-key: rotated rate(7 days) by "+fnARN+"; never rotated") || strings.Count(st, "🔁 ") != len(secrets) {
		t.Fatalf("certs status does not show the schedules:\n%s", st)
	}
	show := harness.MustRun(t, opEnv, joblet, "certs", "schedule", "--show").Stdout
	if strings.Count(show, "rotated by "+fnARN) != len(secrets) {
		t.Fatalf("schedule --show:\n%s", show)
	}
	t.Logf("schedule --show:\n%s", show)

	// The user-issuing CA rotated now, twice with one token: one new CA
	// from the root, current.
	const token = "3b0c8e4e-6f7a-4c1d-9e2b-5a6d7c8e9f01"
	_, ucaBefore := currentVersion(t, c, "joblet/user-ca")
	for range 2 {
		if _, err := c.RotateSecret(context.Background(), &sm.RotateSecretInput{SecretId: aws.String("joblet/user-ca"), ClientRequestToken: aws.String(token)}); err != nil {
			t.Fatal(err)
		}
	}
	ver, uca := currentVersion(t, c, "joblet/user-ca")
	if ver != token || uca == ucaBefore {
		t.Fatalf("after RotateSecret the user-issuing CA's current version is %s, want %s with a new CA", ver, token)
	}
	if r := harness.Run(t, opEnv, joblet, "certs", "status"); r.Code > 1 || !strings.Contains(r.Stdout, "✅ User-issuing CA") {
		t.Fatalf("certs status after the user-issuing CA's rotation:\n%s", r)
	}
}
