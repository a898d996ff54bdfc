package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

var nodeIDLine = regexp.MustCompile(`node id:\s+(\S+)`)

// Three nodes bootstrapped through Secrets Manager behind HAProxy in TLS
// passthrough: node 1's operator config works through the balancer and
// directly against every node.
func TestFleetBehindHAProxy(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	lb := fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t))
	var homes []string
	var backends []string
	for i := 1; i <= 3; i++ {
		home, port, env := smNode(t, moto.URL, "JOBLET_PUBLIC_ADDRESS="+lb, fmt.Sprintf("JOBLET_NODE_ID=node-%d", i))
		harness.MustRun(t, env, joblet, "certs", "bootstrap")
		harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
		homes = append(homes, home)
		backends = append(backends, fmt.Sprintf("127.0.0.1:%d", port))
	}
	harness.StartHAProxy(t, lb, backends)
	cfg := filepath.Join(homes[0], "config", "rnx-config.yml")
	env := harness.Env("RNX_CONFIG=" + cfg)
	if b, _ := os.ReadFile(cfg); !strings.Contains(string(b), "address: "+lb) {
		t.Fatalf("node 1's config does not point at the balancer:\n%s", b)
	}
	harness.Eventually(t, 15*time.Second, "fleet serving through haproxy", func() error {
		for _, b := range backends {
			direct := directConfig(t, cfg, lb, b)
			if r := harness.Run(t, harness.Env(), rnx, "--config", direct, "info"); r.Code != 0 {
				return errors.New(r.String())
			}
		}
		return nil
	})

	seen := map[string]int{}
	failures := 0
	const requests = 30
	for i := 0; i < requests; i++ {
		r := harness.Run(t, env, rnx, "info")
		m := nodeIDLine.FindStringSubmatch(r.Stdout)
		if r.Code != 0 || m == nil {
			failures++
			t.Logf("request %d failed: %s", i, r)
			continue
		}
		seen[m[1]]++
	}
	t.Logf("%d requests through haproxy, %d failed, by node: %v", requests, failures, seen)
	if failures != 0 || len(seen) != 3 {
		t.Fatalf("%d failures, nodes seen %v: want 0 failures and all 3 nodes", failures, seen)
	}
	// A job through the balancer, its output streamed on the same connection.
	if out := harness.MustRun(t, env, rnx, "job", "run", "--follow", "sh", "-c", "echo via-lb").Stdout; out != "via-lb\n" {
		t.Fatalf("job through the balancer printed %q", out)
	}
	// Every role's config (from node 1, which created the fleet: the
	// others joined and hold none) works through the balancer.
	for _, h := range homes[1:] {
		if keys, files := privateKeysIn(t, h); keys != 1 {
			t.Errorf("a joined node holds %d private keys (%v)", keys, files)
		}
	}
	for _, role := range []string{"maintainer", "developer", "reader"} {
		harness.MustRun(t, harness.Env("RNX_CONFIG="+filepath.Join(homes[0], "config", "rnx-config-"+role+".yml")), rnx, "job", "list")
	}

	// A node of another fleet (another prefix, so another CA) is refused by
	// rnx with a clear message.
	home4, port4, env4 := smNode(t, moto.URL, "SECRETS_PREFIX=other-fleet")
	harness.MustRun(t, env4, joblet, "certs", "bootstrap")
	harness.Start(t, env4, joblet, "server", "--config", filepath.Join(home4, "config", "joblet-config.yml"))
	stranger := directConfig(t, cfg, lb, fmt.Sprintf("127.0.0.1:%d", port4))
	var r harness.Result
	harness.Eventually(t, 10*time.Second, "other fleet's node refusing", func() error {
		r = harness.Run(t, harness.Env(), rnx, "--config", stranger, "info")
		if !strings.Contains(r.Stderr, "not signed by this config's CA") {
			return errors.New(r.String())
		}
		return nil
	})
	if r.Code != 1 {
		t.Fatalf("%s", r)
	}
}

// directConfig rewrites the balancer address of an rnx config to one node's.
func directConfig(t *testing.T, cfg, lb, node string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "direct.yml")
	os.WriteFile(p, []byte(strings.ReplaceAll(string(b), lb, node)), 0o600)
	return p
}
