package test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// allows reports whether the policy allows action on the secret called
// name, with IAM's wildcards (* and ?, both crossing "/").
func allows(p *certs.Policy, action, name string) bool {
	arn := "arn:aws:secretsmanager:us-east-1:123456789012:secret:" + name + "-AbCdEf"
	for _, st := range p.Statement {
		actionOK := false
		for _, a := range st.Action {
			actionOK = actionOK || a == "secretsmanager:"+action
		}
		if !actionOK {
			continue
		}
		for _, res := range st.Resource {
			re := "^" + strings.NewReplacer(`\*`, ".*", `\?`, ".").Replace(regexp.QuoteMeta(res)) + "$"
			if regexp.MustCompile(re).MatchString(arn) || res == "*" {
				return true
			}
		}
	}
	return false
}

// checkFlow asserts every recorded call of a flow is inside its policy.
// BatchGetSecretValue needs GetSecretValue on each secret it reads too.
// KMS calls (kms:Sign, kms:GetPublicKey) must be allowed on caKMSKey.
func checkFlow(t *testing.T, flow string, p *certs.Policy, calls []harness.Call, caKMSKey ...string) {
	t.Helper()
	if len(calls) == 0 {
		t.Fatalf("%s: no calls recorded", flow)
	}
	seen := map[string]bool{}
	for _, c := range calls {
		seen[c.Action] = true
		if c.Action == "Sign" || c.Action == "GetPublicKey" {
			if len(caKMSKey) == 0 || !allowsKMS(p, "kms:"+c.Action, caKMSKey[0]) {
				t.Errorf("%s: kms:%s is not allowed by its policy", flow, c.Action)
			}
			continue
		}
		if len(caKMSKey) > 0 {
			for _, s := range c.Secrets {
				if strings.HasSuffix(s, "/ca-key") {
					t.Errorf("%s: %s on %s in KMS mode", flow, c.Action, s)
				}
			}
		}
		if len(c.Secrets) == 0 && !allows(p, c.Action, "") {
			t.Errorf("%s: %s is not allowed by its policy", flow, c.Action)
		}
		for _, s := range c.Secrets {
			if !allows(p, c.Action, s) {
				t.Errorf("%s: %s on %s is not allowed by its policy", flow, c.Action, s)
			}
			if c.Action == "BatchGetSecretValue" && !allows(p, "GetSecretValue", s) {
				t.Errorf("%s: batch read of %s without GetSecretValue on it", flow, s)
			}
			if strings.HasPrefix(flow, "client-") && strings.HasSuffix(s, "/ca-key") {
				t.Errorf("%s read the CA key", flow)
			}
		}
	}
	t.Logf("%s: %d calls, actions %v, all inside the policy", flow, len(calls), keys(seen))
}

// allowsKMS reports whether the policy allows a KMS action on the key.
func allowsKMS(p *certs.Policy, action, key string) bool {
	for _, st := range p.Statement {
		for _, a := range st.Action {
			for _, r := range st.Resource {
				if a == action && r == key {
					return true
				}
			}
		}
	}
	return false
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func policyFor(t *testing.T, flow string, extra ...string) *certs.Policy {
	t.Helper()
	joblet, _ := harness.Bins(t)
	out := harness.MustRun(t, harness.Env(), joblet, append([]string{"certs", "iam-policy", "--for", flow}, extra...)...).Stdout
	var p certs.Policy
	if err := json.Unmarshal([]byte(out), &p); err != nil {
		t.Fatalf("iam-policy --for %s is not valid JSON: %v\n%s", flow, err, out)
	}
	return &p
}

// actionsOnly is p with every resource widened to "*": moto's IAM emulation
// checks actions but does not match secret ARN patterns, so this is how the
// action lists are enforced by moto; the resources are checked by allows.
func actionsOnly(p *certs.Policy) string {
	q := *p
	q.Statement = nil
	for _, st := range p.Statement {
		st.Resource = []string{"*"}
		q.Statement = append(q.Statement, st)
	}
	b, _ := json.Marshal(q)
	return string(b)
}

// Every Secrets Manager call of each flow, recorded against moto, is inside
// the policy printed for that flow; and each flow succeeds under moto's IAM
// enforcement holding only that policy's actions.
func TestIAMPolicies(t *testing.T) {
	t.Parallel()
	flows := []string{"bootstrap", "node", "client-reader", "rotation"}
	m, err := harness.StartMoto("INITIAL_NO_AUTH_ACTION_COUNT=" + itoa(3*len(flows)))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	joblet, rnx := harness.Bins(t)
	policies := map[string]*certs.Policy{}
	creds := map[string][]string{}
	for _, f := range flows {
		policies[f] = policyFor(t, f)
		id, key := iamUserPolicy(t, m.URL, f, actionsOnly(policies[f]))
		creds[f] = []string{"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + key}
	}
	proxy := harness.StartAWSProxy(t, m.URL)

	first, _, env := smNode(t, proxy.URL, creds["bootstrap"]...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	checkFlow(t, "bootstrap", policies["bootstrap"], proxy.Recorded())

	home, _, env := smNode(t, proxy.URL, creds["node"]...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	harness.MustRun(t, env, joblet, "certs", "renew", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	harness.MustRun(t, env, joblet, "certs", "status")
	checkFlow(t, "node", policies["node"], proxy.Recorded())

	_, _, env = smNode(t, proxy.URL, creds["client-reader"]...)
	harness.MustRun(t, append(env, "RNX_CONFIG="+filepath.Join(first, "config", "rnx-config-reader.yml")), rnx, "config", "refresh")
	got := filepath.Join(t.TempDir(), "rnx-config.yml")
	harness.MustRun(t, append(env, "RNX_CONFIG="+got), rnx, "config", "init", "--role", "reader", "--address", "lb.example.com:50051")
	checkFlow(t, "client-reader", policies["client-reader"], proxy.Recorded())

	_, _, env = smNode(t, proxy.URL, creds["rotation"]...)
	for _, step := range []string{"begin", "status", "promote", "finish", "begin", "abort"} {
		harness.MustRun(t, env, joblet, "certs", "rotate-ca", step)
	}
	harness.MustRun(t, env, joblet, "certs", "reissue", "--role", "developer", "--revoke")
	// The record of that re-issue, removed (no grace: no other run).
	if out := harness.MustRun(t, env, joblet, "certs", "prune", "--grace", "0").Stdout; !strings.Contains(out, "1 re-issue record(s) removed") {
		t.Fatalf("prune under the rotation policy:\n%s", out)
	}
	harness.MustRun(t, append(env, "FORCE_REGENERATE=true"), joblet, "certs", "bootstrap")
	calls := proxy.Recorded()
	deleted := false
	for _, c := range calls {
		deleted = deleted || (c.Action == "DeleteSecret" && len(c.Secrets) == 1 && strings.HasPrefix(c.Secrets[0], "joblet/client-reissue/developer-"))
	}
	if !deleted {
		t.Error("no DeleteSecret of the re-issue record was recorded")
	}
	checkFlow(t, "rotation", policies["rotation"], calls)

	// A client of one role cannot read another role's key or the CA key.
	if p := policies["client-reader"]; allows(p, "GetSecretValue", "joblet/ca-key") || allows(p, "GetSecretValue", "joblet/client-key") {
		t.Error("the reader policy allows reading the CA key or the admin key")
	}
	if allows(policies["node"], "PutSecretValue", "joblet/ca-cert") || allows(policies["node"], "CreateSecret", "joblet/ca-cert") {
		t.Error("the node policy allows writing")
	}
	for _, secret := range []string{"joblet/ca-key", "joblet/client-key", "joblet/client-key-admin", "joblet/client-key-reader"} {
		if allows(policies["node"], "GetSecretValue", secret) {
			t.Errorf("the node policy allows reading %s", secret)
		}
	}
}

// iamUserPolicy creates a user with an inline policy document.
func iamUserPolicy(t *testing.T, url, name, doc string) (id, secret string) {
	t.Helper()
	env := harness.Env(harness.AWSEnv(url)...)
	harness.MustRun(t, env, "aws", "iam", "create-user", "--user-name", name)
	harness.MustRun(t, env, "aws", "iam", "put-user-policy", "--user-name", name, "--policy-name", "joblet", "--policy-document", doc)
	f := strings.Fields(harness.MustRun(t, env, "aws", "iam", "create-access-key", "--user-name", name,
		"--query", "AccessKey.[AccessKeyId,SecretAccessKey]", "--output", "text").Stdout)
	return f[0], f[1]
}

// KMS mode: the first node's and a joining node's calls, recorded against
// moto with IAM enforced, are inside the KMS variants of their policies:
// kms:Sign and kms:GetPublicKey on the CA's key, and nothing on ca-key.
func TestIAMPoliciesKMS(t *testing.T) {
	t.Parallel()
	flows := []string{"bootstrap", "node"}
	m, err := harness.StartMoto("INITIAL_NO_AUTH_ACTION_COUNT=" + itoa(3*len(flows)+1))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	joblet, _ := harness.Bins(t)
	env := harness.Env(harness.AWSEnv(m.URL)...)
	arn := strings.TrimSpace(harness.MustRun(t, env, "aws", "kms", "create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY",
		"--query", "KeyMetadata.Arn", "--output", "text").Stdout)
	policies := map[string]*certs.Policy{}
	creds := map[string][]string{}
	for _, f := range flows {
		policies[f] = policyFor(t, f, "--ca-kms-key-id", arn)
		id, key := iamUserPolicy(t, m.URL, "kms-"+f, actionsOnly(policies[f]))
		creds[f] = []string{"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + key, "JOBLET_CA_KMS_KEY_ID=" + arn}
	}
	for _, f := range flows {
		if allows(policies[f], "GetSecretValue", "joblet/ca-key") || allows(policies[f], "CreateSecret", "joblet/ca-key") {
			t.Errorf("the KMS-mode %s policy gives access to joblet/ca-key", f)
		}
	}
	proxy := harness.StartAWSProxy(t, m.URL)
	_, _, env = smNode(t, proxy.URL, creds["bootstrap"]...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	checkFlow(t, "bootstrap (KMS)", policies["bootstrap"], proxy.Recorded(), arn)

	home, _, env := smNode(t, proxy.URL, creds["node"]...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	harness.MustRun(t, env, joblet, "certs", "renew", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	harness.MustRun(t, env, joblet, "certs", "status")
	checkFlow(t, "node (KMS)", policies["node"], proxy.Recorded())
	if allowsKMS(policies["node"], "kms:Sign", arn) {
		t.Error("the KMS-mode node policy allows kms:Sign on the root's key")
	}
	reliability.Record(t, "KMS CA", "first node and joining node (bootstrap, renew, status) holding only the KMS-mode IAM policies, enforced by moto",
		"every call inside its policy: the first node signs with kms:Sign on the root's key; a joining node makes no KMS call and reads no root key")
}
