package test

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// A re-run of `joblet certs bootstrap` on a serving node without its
// original environment (only its home and the AWS endpoint) keeps the
// node's settings and names; one that would move its port is refused and
// writes nothing; traffic through the balancer sees no failure.
func TestBootstrapRerunKeepsNode(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	nodes, lb := rotationFleet(t)
	clientCfg := filepath.Join(t.TempDir(), "rnx-config.yml")
	b, _ := os.ReadFile(filepath.Join(nodes[0].home, "config", "rnx-config.yml"))
	os.WriteFile(clientCfg, b, 0o600)
	harness.Eventually(t, 15*time.Second, "fleet up", func() error { return oneRequest(clientCfg) })

	n := nodes[1]
	before := serverConfig(t, n.home)
	beforeNames := leafNames(t, before)
	loop := startLoop(t, clientCfg, 40*time.Millisecond)

	bare := harness.Env(append(harness.AWSEnv(moto.URL), "JOBLET_HOME="+n.home)...)
	_, _, serial, _ := n.info(t, clientCfg, lb)
	out := harness.MustRun(t, bare, joblet, "certs", "bootstrap").Stdout
	after := serverConfig(t, n.home)
	if !sameListen(after.Server, before.Server) {
		t.Errorf("server settings changed: %+v -> %+v", before.Server, after.Server)
	}
	if after.Store != before.Store || after.Security.ServerLifetime != before.Security.ServerLifetime || after.Security.RefreshInterval != before.Security.RefreshInterval {
		t.Errorf("store or lifetimes changed: %+v %s %s -> %+v %s %s", before.Store, before.Security.ServerLifetime, before.Security.RefreshInterval,
			after.Store, after.Security.ServerLifetime, after.Security.RefreshInterval)
	}
	if got := leafNames(t, after); !slices.Equal(got, beforeNames) {
		t.Errorf("server certificate names changed: %v -> %v\n%s", beforeNames, got, out)
	}
	// The node picks the new certificate up (a reload, no restart).
	harness.Eventually(t, 20*time.Second, "node 2 serving its re-issued certificate", func() error {
		_, _, now, err := n.info(t, clientCfg, lb)
		if err != nil {
			return err
		}
		if now == serial {
			return fmt.Errorf("still %s", now)
		}
		return nil
	})

	// Moving the port: refused, both values named, nothing written.
	cfgBytes, _ := os.ReadFile(n.config())
	moved := harness.FreePort(t)
	r := harness.Run(t, append(bare, fmt.Sprintf("JOBLET_SERVER_PORT=%d", moved)), joblet, "certs", "bootstrap")
	want := fmt.Sprintf("from %d to %d", before.Server.Port, moved)
	if r.Code != 2 || !strings.Contains(r.Stderr, want) || !strings.Contains(r.Stderr, "--reconfigure") {
		t.Errorf("moving the port: exit %d, want 2 and %q:\n%s", r.Code, want, r.Stderr)
	}
	// Dropping the balancer's name: refused the same way.
	r = harness.Run(t, append(bare, "JOBLET_PUBLIC_ADDRESS="), joblet, "certs", "bootstrap")
	if host, _, _ := strings.Cut(lb, ":"); r.Code != 2 || !strings.Contains(r.Stderr, "lose "+host) {
		t.Errorf("dropping the balancer's name: exit %d:\n%s", r.Code, r.Stderr)
	}
	if now, _ := os.ReadFile(n.config()); !bytes.Equal(now, cfgBytes) {
		t.Error("a refused re-run changed joblet-config.yml")
	}
	time.Sleep(2 * time.Second) // traffic after the reload too

	total, failed, rate, errs := loop.finish()
	t.Logf("bootstrap re-run under load: %d requests at %.1f/s through haproxy, %d failed", total, rate, failed)
	for _, e := range errs {
		t.Log(e)
	}
	if failed != 0 {
		t.Fatalf("%d of %d requests through the balancer failed", failed, total)
	}
	reliability.Record(t, "bootstrap re-run", "bootstrap re-run on a serving node without its environment, 3 nodes behind HAProxy under load",
		fmt.Sprintf("%d requests, %d failed; names, address, port and lifetimes kept; a port move and a dropped name refused, nothing written", total, failed))
}

// sameListen compares the listen settings (Listen holds a slice).
func sameListen(a, b config.Listen) bool {
	return a.Address == b.Address && a.Port == b.Port && a.NodeID == b.NodeID && a.ServerAddress == b.ServerAddress &&
		a.PublicAddress == b.PublicAddress && slices.Equal(a.AdditionalNames, b.AdditionalNames)
}

func leafNames(t *testing.T, s *config.Server) []string {
	t.Helper()
	c, err := pki.ParseLeaf([]byte(s.Security.ServerCert))
	if err != nil {
		t.Fatal(err)
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return names
}
