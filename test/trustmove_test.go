package test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// A fleet created before the signed trust state (no ca-bundle secret,
// nodes and clients holding PEM trust only) moves onto it with one
// command, under traffic through HAProxy, with no failed request; after
// that, a PEM bundle naming another CA changes no node's trust.
func TestTrustStateMoveUnderTraffic(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	lb := fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t))
	var nodes []fleetNode
	var backends []string
	for i := 1; i <= 3; i++ {
		home, port, env := smNode(t, moto.URL, "JOBLET_PUBLIC_ADDRESS="+lb, fmt.Sprintf("JOBLET_NODE_ID=node-%d", i))
		harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
		nodes = append(nodes, fleetNode{home: home, addr: fmt.Sprintf("127.0.0.1:%d", port), env: env})
		backends = append(backends, fmt.Sprintf("127.0.0.1:%d", port))
	}
	// Make it a fleet from before: no trust state in the store, none held.
	c, ctx := smClient(moto.URL), context.Background()
	if _, err := c.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: aws.String("joblet/ca-bundle"), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		cfg := serverConfig(t, n.home)
		cfg.Security.TrustState = ""
		b, _ := cfg.Marshal()
		if err := os.WriteFile(n.config(), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	clientCfg := filepath.Join(t.TempDir(), "rnx-config.yml")
	rc, err := config.LoadRnx(filepath.Join(nodes[0].home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range rc.Nodes {
		n.Trust = ""
		rc.Nodes[name] = n
	}
	b, _ := rc.Marshal()
	os.WriteFile(clientCfg, b, 0o600)
	for i := range nodes {
		nodes[i].proc = harness.Start(t, nodes[i].env, joblet, "server", "--config", nodes[i].config())
	}
	harness.StartHAProxy(t, lb, backends)
	harness.Eventually(t, 15*time.Second, "fleet up", func() error { return oneRequest(clientCfg) })

	loop := startLoop(t, clientCfg, 40*time.Millisecond)
	out := harness.MustRun(t, nodes[0].env, joblet, "certs", "trust", "sign").Stdout
	if !strings.Contains(out, "signed") {
		t.Fatalf("trust sign:\n%s", out)
	}
	harness.Eventually(t, 20*time.Second, "every node holding the signed state", func() error {
		for i, n := range nodes {
			if serverConfig(t, n.home).Security.TrustState == "" {
				return fmt.Errorf("node %d not yet", i+1)
			}
		}
		return nil
	})
	harness.MustRun(t, harness.Env(append(nodes[0].env, "RNX_CONFIG="+clientCfg)...), rnx, "config", "refresh")
	if after, _ := config.LoadRnx(clientCfg); after.Nodes[after.NodeNames()[0]].Trust == "" {
		t.Fatal("rnx config refresh took no signed state")
	}
	time.Sleep(2 * time.Second)
	total, failed, rate, errs := loop.finish()
	if failed != 0 || total < 50 {
		t.Fatalf("%d of %d requests failed during the move (%.1f/s): %v", failed, total, rate, errs)
	}
	// Protected now: a PEM bundle with another CA is ignored.
	root, _ := pki.ParseCert([]byte(serverConfig(t, nodes[0].home).Security.CACert))
	evil := newEvilCA(t)
	if _, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String("joblet/ca-bundle"), SecretString: aws.String(string(pki.EncodeCerts(root, evil.Cert)))}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	for i, n := range nodes {
		if !pki.SameCertSet(serverConfig(t, n.home).Security.CACert, []*x509.Certificate{root}) {
			t.Fatalf("node %d took the unsigned bundle after the move", i+1)
		}
	}
	reliability.Record(t, "security", "a fleet from before the signed trust state moves onto it with `certs trust sign`, 3 nodes behind HAProxy, a client at 25 requests/s",
		fmt.Sprintf("%d requests, %d failed; afterwards a PEM bundle naming another CA changes no node's trust", total, failed))
}
