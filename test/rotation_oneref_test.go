package test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// The rotation contract of issue 15, under traffic through HAProxy to
// three nodes: a config made before the rotation and never refreshed works
// through begin and promote and is refused after finish; configs refreshed
// once, right after begin or right after promote, work in every phase and
// after finish. beginFlags go to `rotate-ca begin` (a KMS key, say).
func rotateWithOneRefresh(t *testing.T, nodeEnv []string, beginFlags ...string) {
	joblet, rnx := harness.Bins(t)
	nodes, lb := rotationFleet(t, nodeEnv...)
	env := nodes[0].env
	orig, _ := os.ReadFile(filepath.Join(nodes[0].home, "config", "rnx-config.yml"))
	copyCfg := func(name string) string {
		p := filepath.Join(t.TempDir(), name)
		os.WriteFile(p, orig, 0o600)
		return p
	}
	never, afterBegin, afterPromote := copyCfg("never.yml"), copyCfg("after-begin.yml"), copyCfg("after-promote.yml")
	harness.Eventually(t, 15*time.Second, "fleet up", func() error { return oneRequest(never) })
	refresh := func(cfg string) {
		harness.MustRun(t, harness.Env(append(env, "RNX_CONFIG="+cfg)...), rnx, "config", "refresh")
	}
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	every := 60 * time.Millisecond // three loops: about 50 new TLS connections a second in all
	loops := map[string]*requestLoop{"never refreshed": startLoop(t, never, every),
		"refreshed right after begin": startLoop(t, afterBegin, every), "refreshed right after promote": startLoop(t, afterPromote, every)}

	harness.MustRun(t, env, joblet, append([]string{"certs", "rotate-ca", "begin"}, beginFlags...)...)
	// At once, before any node has refreshed: the new client certificate
	// reaches nodes that trust only the old CA through the cross certificate.
	refresh(afterBegin)
	time.Sleep(3 * time.Second) // nodes refresh every second: all trust both CAs

	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "promote")
	refresh(afterPromote)
	newCA := rotationStatus(t, env).Current.Sha256
	harness.Eventually(t, 20*time.Second, "every node serving a certificate from the new CA", func() error {
		for i, n := range nodes {
			if _, issuer, _, err := n.info(t, afterPromote, lb); err != nil || issuer != newCA {
				return fmt.Errorf("node %d: issuer %s, %v", i+1, issuer, err)
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // traffic on the promoted fleet

	// Stock clients with the never-refreshed config (the old CA alone):
	// openssl and grpcurl verify a node's new certificate through the cross
	// certificate it serves.
	stockClients(t, never, lb, "never refreshed, after promote")
	stockClients(t, afterBegin, lb, "refreshed after begin, after promote")

	// While the never-refreshed client still runs, the nodes have seen
	// client certificates of the outgoing CA: finish refuses and says so.
	probe := directConfig(t, afterPromote, lb, nodes[0].addr)
	r := harness.Run(t, env, joblet, "certs", "rotate-ca", "finish", "--nodes", strings.Join(addrs, ","), "--rnx-config", probe)
	if r.Code != 1 || !strings.Contains(r.Stderr, "clients still present certificates of the outgoing CA") {
		t.Fatalf("finish while an old-CA client runs: %s", r)
	}
	reliability.Record(t, "rotation", "rotate-ca finish --nodes while a client still presents an old-CA certificate", "refused: "+lastLine(r.Stderr))

	total, failed, rate, errs := loops["never refreshed"].finish()
	logLoop(t, "never refreshed, through begin and promote", total, failed, rate, errs)
	delete(loops, "never refreshed")
	time.Sleep(2 * time.Second) // out of the window below

	out := harness.MustRun(t, env, joblet, "certs", "rotate-ca", "finish", "--nodes", strings.Join(addrs, ","), "--rnx-config", probe, "--client-window", "1s").Stdout
	if !strings.Contains(out, "phase stable") {
		t.Fatalf("finish:\n%s", out)
	}
	time.Sleep(4 * time.Second) // nodes drop the old CA and the cross certificate

	for name, l := range loops {
		total, failed, rate, errs := l.finish()
		logLoop(t, name+", through every phase and 4s after finish", total, failed, rate, errs)
	}
	// The never-refreshed config is refused by every node after finish.
	for _, n := range nodes {
		r := harness.Run(t, harness.Env(), rnx, "--config", directConfig(t, never, lb, n.addr), "info")
		if r.Code == 0 {
			t.Fatalf("a config made before the rotation still works after finish (node %s)", n.addr)
		}
	}
	reliability.Record(t, "rotation", "a config made before the rotation, never refreshed, after finish", "refused by every node")
	stockClients(t, afterBegin, lb, "refreshed after begin, after finish")
}

func logLoop(t *testing.T, what string, total, failed int64, rate float64, errs []string) {
	t.Helper()
	t.Logf("%s: %d requests at %.1f/s through haproxy, %d failed", what, total, rate, failed)
	for _, e := range errs {
		t.Log(e)
	}
	if failed != 0 || total < 50 {
		t.Errorf("%s: %d of %d requests failed: want 0", what, failed, total)
	}
	reliability.Record(t, "rotation", "one refresh: a client config "+what, fmt.Sprintf("%d requests at %.0f/s, %d failed", total, rate, failed))
}

// stockClients checks a config against the balancer with clients nobody
// here wrote: openssl s_client (verifying the server's chain against the
// config's CA, presenting the config's certificate chain) and grpcurl.
func stockClients(t *testing.T, cfgPath, addr, what string) {
	t.Helper()
	cfg, err := config.LoadRnx(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	_, node, _ := cfg.Select("")
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(data), 0o600)
		return p
	}
	ca, cert, key := write("ca.pem", node.CA), write("cert.pem", node.Cert), write("key.pem", node.Key)
	for i := 0; i < 3; i++ { // HAProxy spreads connections: reach more than one node
		out, _ := exec.Command("openssl", "s_client", "-connect", addr, "-CAfile", ca, "-cert", cert, "-key", key, "-verify_return_error", "-brief").CombinedOutput()
		if !strings.Contains(string(out), "Verification: OK") {
			t.Fatalf("%s: openssl s_client:\n%s", what, out)
		}
		r := harness.Run(t, harness.Env(), harness.Grpcurl(t), "-cacert", ca, "-cert", cert, "-key", key, addr, "grpc.health.v1.Health/Check")
		if r.Code != 0 || !strings.Contains(r.Stdout, "SERVING") {
			t.Fatalf("%s: grpcurl: %s", what, r)
		}
	}
	reliability.Record(t, "rotation", "stock clients (openssl s_client, grpcurl) with a config "+what, "verified and served")
}

func TestRotationOneRefresh(t *testing.T) {
	t.Parallel()
	resetMoto(t)
	rotateWithOneRefresh(t, nil)
}

// The same with a CA key held in AWS KMS: moving a fleet's CA into KMS,
// and rotating a KMS-held CA to another KMS key.
func TestRotationOneRefreshKMS(t *testing.T) {
	t.Parallel()
	t.Run("store to KMS", func(t *testing.T) {
		resetMoto(t)
		rotateWithOneRefresh(t, nil, "--ca-kms-key-id", kmsKey(t, "ECC_NIST_P256"))
	})
	t.Run("KMS to KMS", func(t *testing.T) {
		resetMoto(t)
		rotateWithOneRefresh(t, []string{"JOBLET_CA_KMS_KEY_ID=" + kmsKey(t, "ECC_NIST_P256")}, "--ca-kms-key-id", kmsKey(t, "ECC_NIST_P256"))
	})
}
