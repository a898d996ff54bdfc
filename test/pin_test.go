package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// The operator creates the fleet (`certs init`), which prints the root's
// fingerprint and the user-data line; a node given another fingerprint
// refuses the store naming both and writes nothing; given the printed one
// (pasted as openssl shows it: upper case, colons) it joins in one Secrets
// Manager call, as without a pin; `rnx config init` takes the same pin.
func TestPinnedJoinSecretsManager(t *testing.T) {
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	_, _, opEnv := smNode(t, proxy.URL)
	ini := harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", "lb.example.com:50051", "--out", t.TempDir())
	m := regexp.MustCompile(`(?m)^  user data or /etc/default/joblet: JOBLET_CA_FINGERPRINT=(sha256:[0-9a-f]{64})$`).FindStringSubmatch(ini.Stdout)
	if m == nil || !strings.Contains(ini.Stdout, "Root CA fingerprint: "+m[1]) || !strings.Contains(ini.Stdout, "--ca-fingerprint "+m[1]) {
		t.Fatalf("certs init does not print the pin and its user-data line:\n%s", ini.Stdout)
	}
	pin := m[1]
	if got := caFingerprint(t, readStore(t, "joblet")["joblet/ca-cert"]); "sha256:"+got != pin {
		t.Fatalf("printed %s, the stored root is sha256:%s", pin, got)
	}
	var pairs []string
	for i := len("sha256:"); i < len(pin); i += 2 {
		pairs = append(pairs, strings.ToUpper(pin[i:i+2]))
	}
	pasted := "SHA256 Fingerprint=" + strings.Join(pairs, ":") // openssl x509 -fingerprint -sha256
	wrong := "sha256:" + strings.Repeat("ab", 32)

	home, _, env := smNode(t, proxy.URL, "JOBLET_CA_FINGERPRINT="+wrong)
	proxy.Calls()
	r := harness.Run(t, env, joblet, "certs", "bootstrap")
	if r.Code != 1 || !strings.Contains(r.Stderr, "the store's root is "+pin) || !strings.Contains(r.Stderr, "pins "+wrong) || !strings.Contains(r.Stderr, "nothing was written") {
		t.Fatalf("a join pinned to another root: %s", r)
	}
	noFiles(t, home)
	if calls := harness.Count(proxy.Calls()); calls["CreateSecret"]+calls["PutSecretValue"] != 0 {
		t.Fatalf("a refused pinned join wrote to the store: %v", calls)
	}

	home, _, env = smNode(t, proxy.URL, "JOBLET_CA_FINGERPRINT="+pasted)
	r = harness.MustRun(t, env, joblet, "certs", "bootstrap")
	calls := proxy.Calls()
	if len(calls) != 1 || calls[0] != "BatchGetSecretValue" {
		t.Fatalf("a pinned join made Secrets Manager calls %v, want one BatchGetSecretValue", calls)
	}
	if strings.Contains(r.Stdout+r.Stderr, "NO PIN") {
		t.Fatalf("a pinned join said it trusted what it found: %s", r)
	}
	if _, err := os.Stat(filepath.Join(home, "config", "joblet-config.yml")); err != nil {
		t.Fatal(err)
	}

	// Unpinned, the first join says so, loudly, once.
	_, _, env = smNode(t, proxy.URL)
	r = harness.MustRun(t, env, joblet, "certs", "bootstrap")
	if !strings.Contains(r.Stdout, "NO PIN: this node trusts the root CA it found in") || !strings.Contains(r.Stdout, pin) {
		t.Fatalf("an unpinned first join: %s", r)
	}
	if r = harness.MustRun(t, env, joblet, "certs", "bootstrap"); strings.Contains(r.Stdout+r.Stderr, "NO PIN") {
		t.Fatalf("the re-run warned again: %s", r)
	}

	cfg := filepath.Join(t.TempDir(), "rnx.yml")
	c := harness.Run(t, append(env, "RNX_CONFIG="+cfg), rnx, "config", "init", "--role", "reader", "--address", "lb.example.com:50051", "--ca-fingerprint", wrong)
	if c.Code != 1 || !strings.Contains(c.Stderr, "pins "+wrong) {
		t.Fatalf("rnx config init pinned to another root: %s", c)
	}
	if _, err := os.Stat(cfg); err == nil {
		t.Fatal("a refused rnx config init wrote its config")
	}
	harness.MustRun(t, append(env, "RNX_CONFIG="+cfg, "JOBLET_CA_FINGERPRINT="+strings.ToUpper(strings.TrimPrefix(pin, "sha256:"))), rnx, "config", "init", "--role", "reader", "--address", "lb.example.com:50051")
	// export copies the store into an embedded install: pinned, it copies
	// nothing from a store whose root is another.
	homeE, _, envE := smNode(t, proxy.URL)
	if r := harness.Run(t, envE, joblet, "certs", "export", "--ca-fingerprint", wrong); r.Code != 1 || !strings.Contains(r.Stderr, "pins "+wrong) {
		t.Fatalf("export pinned to another root: %s", r)
	}
	if _, err := os.Stat(filepath.Join(homeE, "ca")); err == nil {
		t.Fatal("a refused pinned export copied the store")
	}
	noFiles(t, homeE)
	harness.MustRun(t, envE, joblet, "certs", "export", "--ca-fingerprint", pin)
	reliability.Record(t, "security", "a node, rnx config init and certs export given another root's fingerprint; then the right one pasted as openssl prints it",
		"refused naming both fingerprints, nothing written; with the right pin: joined in 1 Secrets Manager call")
}
