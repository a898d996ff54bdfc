package test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// embeddedNode bootstraps an embedded-mode node into a fresh home and
// starts it on 127.0.0.1.
func embeddedNode(t *testing.T) (home string, env []string) {
	t.Helper()
	joblet, rnx := harness.Bins(t)
	home = t.TempDir()
	port := harness.FreePort(t)
	env = harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(port))
	r := harness.MustRun(t, env, joblet, "certs", "bootstrap")
	for _, want := range []string{"✨ CA Certificate: Generated", "✨ Client Certificate (admin): Generated", "🆕 Server Certificate: Generated locally"} {
		if !strings.Contains(r.Stdout, want) {
			t.Fatalf("bootstrap output lacks %q:\n%s", want, r)
		}
	}
	harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	env = append(env, "RNX_CONFIG="+filepath.Join(home, "config", "rnx-config.yml"))
	harness.Eventually(t, 10*time.Second, "node serving", func() error {
		if r := harness.Run(t, env, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	return home, env
}

func TestEmbeddedEndToEnd(t *testing.T) {
	joblet, rnx := harness.Bins(t)
	home, env := embeddedNode(t)

	id := strings.TrimSpace(harness.MustRun(t, env, rnx, "job", "run", "sh", "-c", "echo hello from joblet; echo to stderr >&2").Stdout)
	if !jobIDShape.MatchString(id) {
		t.Fatalf("job id %q", id)
	}
	logs := harness.MustRun(t, env, rnx, "job", "log", id, "--follow")
	if logs.Stdout != "hello from joblet\n" || logs.Stderr != "to stderr\n" {
		t.Fatalf("logs: %s", logs)
	}
	list := harness.MustRun(t, env, rnx, "--node=default", "job", "list").Stdout
	if !strings.Contains(list, id) || !strings.Contains(list, "COMPLETED") {
		t.Fatalf("list:\n%s", list)
	}
	long := strings.TrimSpace(harness.MustRun(t, env, rnx, "job", "run", "sleep", "60").Stdout)
	stop := harness.MustRun(t, env, rnx, "job", "stop", long).Stdout
	if !strings.Contains(stop, "STOPPED") {
		t.Fatalf("stop:\n%s", stop)
	}
	r := harness.Run(t, env, rnx, "--node", "reader", "job", "run", "true")
	if r.Code != 1 || !strings.Contains(r.Stderr, `role "reader" may not call RunJob`) {
		t.Fatalf("reader run: %s", r)
	}
	// A per-role file works on its own.
	roleEnv := append(env, "RNX_CONFIG="+filepath.Join(home, "config", "rnx-config-reader.yml"))
	if out := harness.MustRun(t, roleEnv, rnx, "info").Stdout; !strings.Contains(out, "role:      reader") {
		t.Fatalf("reader info:\n%s", out)
	}

	// Re-running bootstrap keeps the CA and the client certificates and
	// re-issues only the server certificate.
	var first, second struct {
		NodeID string                                  `json:"nodeId"`
		Items  []struct{ Name, Action, Sha256 string } `json:"certificates"`
	}
	cfgBefore, _ := os.ReadFile(filepath.Join(home, "config", "rnx-config.yml"))
	json.Unmarshal([]byte(harness.MustRun(t, env, joblet, "certs", "bootstrap", "--json").Stdout), &first)
	json.Unmarshal([]byte(harness.MustRun(t, env, joblet, "certs", "bootstrap", "--json").Stdout), &second)
	if len(first.Items) != 7 || first.NodeID == "" || first.NodeID != second.NodeID {
		t.Fatalf("json: %+v %+v", first, second)
	}
	for i, it := range first.Items {
		if it.Name == "Server Certificate" {
			if it.Sha256 == second.Items[i].Sha256 {
				t.Error("server certificate not re-issued")
			}
			continue
		}
		if it.Action != "retrieved" || it.Sha256 != second.Items[i].Sha256 {
			t.Errorf("%s: %s, changed=%v", it.Name, it.Action, it.Sha256 != second.Items[i].Sha256)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(home, "config", "rnx-config.yml")); string(after) != string(cfgBefore) {
		t.Error("the client config changed on a plain re-run")
	}
}

func TestEmbeddedBadInput(t *testing.T) {
	joblet, rnx := harness.Bins(t)
	home, env := embeddedNode(t)
	snap := func() map[string]string {
		m := map[string]string{}
		for _, d := range []string{"config", "ca/joblet"} {
			entries, _ := os.ReadDir(filepath.Join(home, d))
			for _, e := range entries {
				b, _ := os.ReadFile(filepath.Join(home, d, e.Name()))
				m[d+"/"+e.Name()] = string(b)
			}
		}
		return m
	}
	before := snap()
	// Every bad-settings vector, run against this installed node.
	for _, v := range usageVectors(t, home, t.TempDir()) {
		v.check(t, joblet)
	}
	after := snap()
	if len(after) != len(before) {
		t.Fatalf("files added or removed: %d -> %d", len(before), len(after))
	}
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s changed after failed runs", k)
		}
	}
	// The node still serves with the untouched files.
	harness.MustRun(t, env, rnx, "job", "list")
}

func TestRnxRefusesAnotherFleet(t *testing.T) {
	_, rnx := harness.Bins(t)
	homeA, envA := embeddedNode(t)
	_, envB := embeddedNode(t)
	// Node B's config, but with fleet A's credentials: B's certificate is
	// not signed by A's CA.
	cfgA, _ := os.ReadFile(filepath.Join(homeA, "config", "rnx-config.yml"))
	var addrB string
	for _, kv := range envB {
		if v, ok := strings.CutPrefix(kv, "JOBLET_SERVER_PORT="); ok {
			addrB = "127.0.0.1:" + v
		}
	}
	var addrA string
	for _, kv := range envA {
		if v, ok := strings.CutPrefix(kv, "JOBLET_SERVER_PORT="); ok {
			addrA = "127.0.0.1:" + v
		}
	}
	mixed := filepath.Join(t.TempDir(), "mixed.yml")
	os.WriteFile(mixed, []byte(strings.ReplaceAll(string(cfgA), addrA, addrB)), 0o600)
	r := harness.Run(t, harness.Env(), rnx, "--config", mixed, "info")
	if r.Code != 1 || !strings.Contains(r.Stderr, "not signed by this config's CA") {
		t.Fatalf("%s", r)
	}
}

// A config file with a private key that others can read is used, with a
// warning that says how to fix it.
func TestExposedConfigWarns(t *testing.T) {
	_, rnx := harness.Bins(t)
	home, env := embeddedNode(t)
	cfg := filepath.Join(home, "config", "rnx-config.yml")
	os.Chmod(cfg, 0o644)
	r := harness.MustRun(t, env, rnx, "job", "list")
	if !strings.Contains(r.Stderr, "holds a private key and is accessible to others (mode 0644): run `chmod 600 "+cfg+"`") {
		t.Fatalf("%s", r)
	}
}
