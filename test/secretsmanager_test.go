package test

import (
	"encoding/json"
	"github.com/ehsaniara/joblet/internal/certs"
	"os/exec"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
	"github.com/ehsaniara/joblet/test/harness"
)

// aws runs the operator's aws CLI against moto.
func awsCLI(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command("aws", args...)
	cmd.Env = harness.Env(harness.AWSEnv(motoFor(t).URL)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("aws %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// First node and joining node in auto mode: the EC2 metadata mock gives the
// region, the instance id and (for the first node) the role credentials.
func TestFirstAndJoiningNodeOnEC2(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	proxy := harness.StartAWSProxy(t, moto.URL)

	imds1 := harness.StartIMDS(t, "i-0000000000000001", "us-east-1")
	home1, _, env1 := smNode(t, proxy.URL, "USE_SECRETS_MANAGER=auto", "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds1,
		"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_REGION=", "AWS_DEFAULT_REGION=")
	r := harness.MustRun(t, env1, joblet, "certs", "bootstrap")
	for _, want := range []string{"secretsmanager mode, node i-0000000000000001", "✨ CA Certificate: Generated and stored in Secrets Manager at " + proxy.URL,
		"✨ Client Certificate (admin): Generated", "🆕 Server Certificate: Generated locally"} {
		if !strings.Contains(r.Stdout, want) {
			t.Errorf("first node output lacks %q:\n%s", want, r.Stdout)
		}
	}
	if !proxy.SawAccessKey("AKIAIMDSMOCK0000") {
		t.Error("the first node did not use the instance role credentials from the metadata service")
	}
	first := harness.Count(proxy.Calls())
	t.Logf("first node Secrets Manager calls: %v", first)
	// Two reads of an empty store (the second after a random pause, in
	// case a node started with it is creating the fleet), every shared
	// secret, then the fleet's signed trust state.
	if want := len(certs.Names{Prefix: "joblet"}.All()) + 1; first["CreateSecret"] != want || first["BatchGetSecretValue"] != 2 || len(first) != 2 {
		t.Errorf("first node calls %v, want 2 BatchGetSecretValue and %d CreateSecret", first, want)
	}

	imds2 := harness.StartIMDS(t, "i-0000000000000002", "us-east-1")
	home2, _, env2 := smNode(t, proxy.URL, "USE_SECRETS_MANAGER=auto", "AWS_EC2_METADATA_SERVICE_ENDPOINT="+imds2, "AWS_REGION=")
	r = harness.MustRun(t, env2, joblet, "certs", "bootstrap", "--json")
	var res struct {
		Mode   string
		NodeID string                          `json:"nodeId"`
		Items  []struct{ Name, Action string } `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
		t.Fatal(err, r.Stdout)
	}
	if res.Mode != "secretsmanager" || res.NodeID != "i-0000000000000002" {
		t.Errorf("joining node: mode %q node %q", res.Mode, res.NodeID)
	}
	for _, it := range res.Items {
		if it.Name != "Server Certificate" && it.Action != "retrieved" {
			t.Errorf("joining node %s: %s", it.Name, it.Action)
		}
	}
	join := proxy.Calls()
	t.Logf("joining node Secrets Manager calls: %v", join)
	if len(join) > 2 {
		t.Errorf("joining node made %d calls (%v), want at most 2", len(join), join)
	}

	ca := checkStore(t, readStore(t, "joblet"), "joblet")
	s1, s2 := serverConfig(t, home1), serverConfig(t, home2)
	if s1.Security.CACert != s2.Security.CACert || s1.Security.ServerCert == s2.Security.ServerCert || s1.Security.ServerKey == s2.Security.ServerKey {
		t.Fatal("nodes must share the CA and have their own server certificate and key")
	}
	for _, s := range []string{s1.Security.ServerCert, s2.Security.ServerCert} {
		openssl.Verify(t, pki.EncodeCert(ca), []byte(s), "sslserver")
	}

	// The spec's own commands work on what was stored.
	list := awsCLI(t, "secretsmanager", "list-secrets", "--filters", "Key=name,Values=joblet/", "--query", "SecretList[*].[Name,Description]", "--output", "text")
	n := certs.Names{Prefix: "joblet"}
	for _, name := range n.All() {
		if !strings.Contains(list, name+"\t"+n.Description(name)) {
			t.Errorf("list-secrets lacks %s with its description:\n%s", name, list)
		}
	}
	if !strings.Contains(list, "joblet/ca-cert\tJoblet Root CA Certificate - shared across all instances") {
		t.Errorf("CA description differs from the spec:\n%s", list)
	}
	pemText := awsCLI(t, "secretsmanager", "get-secret-value", "--secret-id", "joblet/ca-cert", "--query", "SecretString", "--output", "text")
	cmd := exec.Command("openssl", "x509", "-noout", "-dates")
	cmd.Stdin = strings.NewReader(pemText)
	dates, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(dates), "notBefore=") || !strings.Contains(string(dates), "notAfter=") {
		t.Fatalf("get-secret-value | openssl x509 -noout -dates: %v\n%s", err, dates)
	}
	tags := awsCLI(t, "secretsmanager", "describe-secret", "--secret-id", "joblet/ca-key", "--query", "Tags", "--output", "json")
	if !strings.Contains(tags, `"managed-by"`) || !strings.Contains(tags, `"private-key"`) {
		t.Errorf("tags: %s", tags)
	}
}

func TestForceRegenerateKeepsPreviousVersion(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	before := readStore(t, "joblet")
	r := harness.MustRun(t, append(env, "FORCE_REGENERATE=true"), joblet, "certs", "bootstrap")
	if strings.Contains(r.Stdout, "Retrieved") {
		t.Fatalf("force kept something:\n%s", r.Stdout)
	}
	after := readStore(t, "joblet")
	checkStore(t, after, "joblet")
	for name, v := range before {
		if after[name] == v {
			t.Errorf("%s unchanged after FORCE_REGENERATE", name)
		}
		prev := awsCLI(t, "secretsmanager", "get-secret-value", "--secret-id", name, "--version-stage", "AWSPREVIOUS", "--query", "SecretString", "--output", "text")
		if strings.TrimSpace(prev) != strings.TrimSpace(v) {
			t.Errorf("%s: AWSPREVIOUS is not the replaced value", name)
		}
	}
}

func TestSecretPrefix(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL, "SECRETS_PREFIX=my-app/joblet")
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	checkStore(t, readStore(t, "my-app/joblet"), "my-app/joblet")
	if v := readStore(t, "joblet"); len(v) != 0 {
		t.Fatalf("secrets written outside the prefix: %v", v)
	}

	// An invalid prefix is refused before any call to the store.
	proxy := harness.StartAWSProxy(t, moto.URL)
	home, _, env := smNode(t, proxy.URL, "SECRETS_PREFIX=my app/../joblet")
	r := harness.Run(t, env, joblet, "certs", "bootstrap")
	if r.Code != 2 || !strings.Contains(r.Stderr, "invalid secret prefix") {
		t.Fatalf("%s", r)
	}
	if calls := proxy.Calls(); len(calls) != 0 {
		t.Fatalf("calls made before rejecting the prefix: %v", calls)
	}
	noFiles(t, home)
}
