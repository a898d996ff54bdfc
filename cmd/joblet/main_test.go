package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runIn runs the joblet command tree in-process with a clean environment
// and a JOBLET_HOME that holds nothing.
func runIn(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	for _, k := range []string{"USE_SECRETS_MANAGER", "JOBLET_STORE", "SECRETS_PREFIX", "EC2_REGION", "AWS_REGION",
		"JOBLET_KMS_KEY_ID", "JOBLET_REPLICA_REGIONS", "JOBLET_CA_KMS_KEY_ID", "JOBLET_TIMEOUT"} {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
	t.Setenv("JOBLET_HOME", filepath.Join(t.TempDir(), "no-home"))
	var out, errb bytes.Buffer
	code = run(args, &out, &errb)
	return code, out.String(), errb.String()
}

func TestHelpWithoutConfig(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"help"}, {"certs", "--help"}, {"certs", "rotate-ca", "--help"},
		{"certs", "rotate-ca", "status", "--help"}, {"certs", "bootstrap", "-h"}, {"server", "--help"}} {
		code, out, errs := runIn(t, args...)
		if code != 0 || !strings.Contains(out, "Usage:") {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	_, out, _ := runIn(t, "certs", "rotate-ca", "--help")
	for _, step := range []string{"begin", "promote", "finish", "abort", "status"} {
		if !strings.Contains(out, step) {
			t.Errorf("rotate-ca help does not list %s:\n%s", step, out)
		}
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		code, out, errs := runIn(t, args...)
		if code != 0 || !strings.HasPrefix(out, "joblet ") || errs != "" {
			t.Errorf("%v: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
}

// Bad usage exits 2 with the message, the command's usage line and where
// to find more: a few lines, not the whole help.
func TestBadUsageIsShort(t *testing.T) {
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"certs", "status", "--jsn"}, []string{"unknown flag: --jsn", "did you mean --json?", "joblet certs status", "Run 'joblet certs status --help'"}},
		{[]string{"certs", "bootstrap", "--kms-key-arn", "x"}, []string{"unknown flag: --kms-key-arn", "joblet certs bootstrap"}},
		{[]string{"certs", "status", "extra"}, []string{`takes no arguments, got "extra"`, "Run 'joblet certs status --help'"}},
		{[]string{"certs", "rotate-ca", "begin", "now"}, []string{`got "now"`, "joblet certs rotate-ca begin"}},
		{[]string{"certs", "stauts"}, []string{`unknown command "stauts"`, "did you mean status?"}},
		{[]string{"certs", "rotate-ca", "promot"}, []string{"did you mean promote?"}},
		{[]string{"serve"}, []string{"did you mean server?"}},
		{[]string{"certs"}, []string{"joblet certs needs a command", "Usage: joblet certs <command>"}},
		{[]string{}, []string{"joblet needs a command"}},
		{[]string{"certs", "status", "--warn-days", "soon"}, []string{"--warn-days"}},
		// rotate-ca status takes no --key-type: help does not list it, parsing refuses it
		{[]string{"certs", "rotate-ca", "status", "--key-type", "rsa-2048"}, []string{"unknown flag: --key-type"}},
	}
	for _, c := range cases {
		code, out, errs := runIn(t, c.args...)
		if code != 2 {
			t.Errorf("%v: exit %d, want 2\n%s", c.args, code, errs)
		}
		if out != "" {
			t.Errorf("%v: wrote to stdout: %q", c.args, out)
		}
		if n := strings.Count(errs, "\n"); n >= 10 {
			t.Errorf("%v: %d lines of usage, want a short one:\n%s", c.args, n, errs)
		}
		for _, w := range c.want {
			if !strings.Contains(errs, w) {
				t.Errorf("%v: stderr does not mention %q:\n%s", c.args, w, errs)
			}
		}
	}
}

// The spellings iam-policy had before the flags were aligned still work,
// with a notice on stderr; stdout stays the policy alone.
func TestDeprecatedAliases(t *testing.T) {
	code, out, errs := runIn(t, "certs", "iam-policy", "--for", "bootstrap", "--kms-key-arn", "arn:aws:kms:us-east-1:1:key/k", "--replicas")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, w := range []string{"--kms-key-arn has been deprecated, use --kms-key-id", "--replicas has been deprecated"} {
		if !strings.Contains(errs, w) {
			t.Errorf("stderr does not mention %q:\n%s", w, errs)
		}
	}
	var old map[string]any
	if err := json.Unmarshal([]byte(out), &old); err != nil {
		t.Fatalf("stdout is not the policy: %v\n%s", err, out)
	}
	code, now, errs := runIn(t, "certs", "iam-policy", "--for", "bootstrap", "--kms-key-id", "arn:aws:kms:us-east-1:1:key/k", "--replica-regions", "us-west-2")
	if code != 0 || errs != "" {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if now != out {
		t.Errorf("the new spellings give another policy:\nold %s\nnew %s", out, now)
	}
	if !strings.Contains(now, "ReplicateSecretToRegions") || !strings.Contains(now, "arn:aws:kms:us-east-1:1:key/k") {
		t.Errorf("the policy lacks the replication or the KMS key:\n%s", now)
	}
	_, help, _ := runIn(t, "certs", "iam-policy", "--help")
	if strings.Contains(help, "kms-key-arn") || strings.Contains(help, "--replicas ") {
		t.Errorf("help lists a deprecated spelling:\n%s", help)
	}
}

func TestCompletion(t *testing.T) {
	for sh, want := range map[string]string{"bash": "complete -o default", "zsh": "#compdef joblet", "fish": "complete -c joblet"} {
		code, out, errs := runIn(t, "completion", sh)
		if code != 0 || !strings.Contains(out, want) || !strings.Contains(out, "__complete") {
			t.Errorf("completion %s: exit %d, stderr %q, stdout %.200q", sh, code, errs, out)
		}
	}
}

// The flags a command takes are the flags it uses.
func TestFlagsPerCommand(t *testing.T) {
	cases := map[string]struct{ has, hasNot []string }{
		"certs status":           {has: []string{"--json", "--warn-days", "--store", "--ca-kms-key-id"}, hasNot: []string{"--kms-key-id ", "--replica-regions", "--tag"}},
		"certs reissue":          {has: []string{"--json", "--role", "--revoke"}, hasNot: []string{"--ca-kms-key-id"}},
		"certs revoke":           {has: []string{"--json", "--serial", "--cert"}, hasNot: []string{"--ca-kms-key-id", "--key-type"}},
		"certs replicate":        {has: []string{"--replica-regions"}, hasNot: []string{"--store", "--tag", "--kms-key-id"}},
		"certs export":           {has: []string{"--replace", "--store"}, hasNot: []string{"--kms-key-id", "--replica-regions", "--ca-kms-key-id"}},
		"certs renew":            {has: []string{"--json", "--config"}, hasNot: []string{"--store", "--prefix"}},
		"certs rotate-ca begin":  {has: []string{"--ca-kms-key-id", "--key-type", "--ca-lifetime", "--json", "--nodes"}, hasNot: []string{"--force"}},
		"certs rotate-ca status": {has: []string{"--nodes", "--rnx-config", "--json"}, hasNot: []string{"--key-type", "--ca-kms-key-id"}},
		"certs iam-policy":       {has: []string{"--kms-key-id", "--replica-regions", "--ca-kms-key-id"}, hasNot: []string{"--store"}},
	}
	for cmd, c := range cases {
		code, out, errs := runIn(t, append(strings.Fields(cmd), "--help")...)
		if code != 0 {
			t.Fatalf("%s --help: exit %d: %s", cmd, code, errs)
		}
		for _, f := range c.has {
			if !strings.Contains(out, f) {
				t.Errorf("%s: help does not list %s", cmd, f)
			}
		}
		for _, f := range c.hasNot {
			if strings.Contains(out, f) {
				t.Errorf("%s: help lists %s, which it ignores", cmd, f)
			}
		}
	}
}

// Flags default from their variables; the command line overrides them.
func TestEnvDefaultsAndOverride(t *testing.T) {
	home := t.TempDir()
	code, _, errs := runIn(t, "certs", "bootstrap", "--home", home, "--use-secrets-manager", "false", "--server-address", "127.0.0.1", "--port", "70000")
	if code != 2 || !strings.Contains(errs, `port "70000"`) {
		t.Fatalf("flag: exit %d: %s", code, errs)
	}
	t.Setenv("JOBLET_SERVER_PORT", "80000")
	var out, eb bytes.Buffer
	if code := run([]string{"certs", "bootstrap", "--home", home, "--use-secrets-manager", "false", "--server-address", "127.0.0.1"}, &out, &eb); code != 2 || !strings.Contains(eb.String(), `port "80000"`) {
		t.Fatalf("env: exit %d: %s", code, eb.String())
	}
	eb.Reset()
	if code := run([]string{"certs", "bootstrap", "--home", home, "--use-secrets-manager", "false", "--server-address", "127.0.0.1", "--port", "0"}, &out, &eb); code != 2 || !strings.Contains(eb.String(), `port "0"`) {
		t.Fatalf("flag over env: exit %d: %s", code, eb.String())
	}
}

// A directory-store fleet end to end in-process: bootstrap, status, revoke
// and reissue print JSON that parses.
func TestJSONOutputs(t *testing.T) {
	home, store := t.TempDir(), "dir:"+t.TempDir()
	base := []string{"--store", store}
	code, out, errs := runIn(t, append([]string{"certs", "bootstrap", "--home", home, "--server-address", "127.0.0.1", "--json"}, base...)...)
	var res struct {
		Items []struct{ Name, Serial string } `json:"certificates"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || len(res.Items) == 0 {
		t.Fatalf("bootstrap --json: exit %d, %s\n%s", code, errs, out)
	}
	code, out, errs = runIn(t, append([]string{"certs", "reissue", "--role", "reader", "--revoke", "--json"}, base...)...)
	var re struct {
		Role, OldSerial, NewSerial string
		RevokedOld                 bool
	}
	if code != 0 || json.Unmarshal([]byte(out), &re) != nil || !re.RevokedOld || re.OldSerial == re.NewSerial || re.Role != "reader" {
		t.Fatalf("reissue --json: exit %d, %s\n%s", code, errs, out)
	}
	code, out, errs = runIn(t, append([]string{"certs", "revoke", "--serial", re.NewSerial, "--json"}, base...)...)
	var rv struct {
		Serial      string
		Revocations []struct{ Serial string }
	}
	if code != 0 || json.Unmarshal([]byte(out), &rv) != nil || len(rv.Revocations) != 2 {
		t.Fatalf("revoke --json: exit %d, %s\n%s", code, errs, out)
	}
	code, out, errs = runIn(t, "certs", "renew", "--config", filepath.Join(home, "config", "joblet-config.yml"), "--json")
	var rn struct{ Serial string }
	if code != 0 || json.Unmarshal([]byte(out), &rn) != nil || rn.Serial == "" {
		t.Fatalf("renew --json: exit %d, %s\n%s", code, errs, out)
	}
	code, out, errs = runIn(t, append([]string{"certs", "rotate-ca", "status", "--json"}, base...)...)
	var st struct{ Phase string }
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Phase == "" {
		t.Fatalf("rotate-ca status --json: exit %d, %s\n%s", code, errs, out)
	}
	// replicate needs Secrets Manager: bad usage, exit 2
	if code, _, errs := runIn(t, "certs", "replicate", "--use-secrets-manager", "false"); code != 2 || !strings.Contains(errs, "replicate works on Secrets Manager") {
		t.Fatalf("replicate off Secrets Manager: exit %d: %s", code, errs)
	}
}
