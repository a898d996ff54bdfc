package test

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// The node-issuing CA's scheduled re-key, under traffic through HAProxy:
// `joblet certs node-ca --rekey --if-due` does nothing until the CA is
// due, then gives it a new key once; the nodes move to it on their next
// refresh; the clients change nothing (they trust the root); and no
// request fails, before, during, or after the old one expires. The
// lifetime is 40 seconds (due at 20) instead of 14 days (due at 7).
func TestNodeCAScheduledRekeyUnderTraffic(t *testing.T) {
	resetMoto(t)
	joblet, _ := harness.Bins(t)
	f := startRotatorFleet(t, joblet, "--node-ca-lifetime", "40s")
	opEnv, nodes, created := f.opEnv, f.nodes, f.inited
	loop := startLoop(t, f.cfg, 40*time.Millisecond) // 25 requests per second

	type info struct {
		Sha256   string
		NotAfter time.Time
	}
	var res struct {
		Step     string
		NodeCA   info `json:"nodeCa"`
		Replaced info
		Reason   string
	}
	scheduled := func() {
		t.Helper()
		r := harness.MustRun(t, opEnv, joblet, "certs", "node-ca", "--rekey", "--if-due", "--json")
		res.Step = ""
		if err := json.Unmarshal([]byte(r.Stdout), &res); err != nil {
			t.Fatalf("%v:\n%s", err, r)
		}
	}
	if r := harness.MustRun(t, opEnv, joblet, "certs", "node-ca", "--rekey", "--if-due"); !strings.Contains(r.Stdout, "nothing to do") {
		t.Fatalf("the scheduled run before the node-issuing CA is due:\n%s", r)
	}
	old := served(t, nodes[0].addr)

	time.Sleep(time.Until(created.Add(21 * time.Second)))
	scheduled()
	if res.Step != "node-ca-rekeyed" || res.Replaced.Sha256 != old || res.NodeCA.Sha256 == old {
		t.Fatalf("the scheduled run once due: %+v (nodes served %s)", res, old)
	}
	newCA, oldExpiry := res.NodeCA.Sha256, res.Replaced.NotAfter
	t.Logf("re-keyed %.0fs after init (%s); the old one expires at %s", time.Since(created).Seconds(), res.Reason, oldExpiry.Format(time.RFC3339))
	scheduled()
	if res.Step != "nothing" {
		t.Fatalf("the scheduled run repeated: %+v", res)
	}
	harness.Eventually(t, 10*time.Second, "every node serving from the new node-issuing CA", func() error {
		for i, n := range nodes {
			if got := served(t, n.addr); got != newCA {
				return fmt.Errorf("node %d serves from %s", i+1, got)
			}
		}
		return nil
	})
	moved := time.Since(created)
	// Past the old one's expiry: nothing depends on it any more.
	time.Sleep(time.Until(oldExpiry.Add(3 * time.Second)))
	total, failed, rate, errs := loop.finish()
	t.Logf("nodes moved %.1fs after init; %d requests (%.0f/s) through haproxy from before the re-key to 3s past the old CA's expiry, %d failed", moved.Seconds(), total, rate, failed)
	if failed != 0 {
		t.Fatalf("%d of %d requests failed: %q", failed, total, errs)
	}
	reliability.Record(t, "split issuing power", "the node-issuing CA re-keyed by the scheduled `certs node-ca --rekey --if-due` once due (a 40s lifetime, due at 20s) on 2 nodes behind HAProxy under load, run on through the old CA's expiry",
		fmt.Sprintf("%d requests at %.0f/s, %d failed; nodes served from the new CA %.1fs after init; the runs before due and after the re-key said nothing to do", total, rate, failed, moved.Seconds()))
}

// served is the SHA-256 fingerprint of the CA that issued the certificate
// the server at addr presents (its node-issuing CA), from the handshake
// itself: what the running process serves, not what its config holds.
func served(t *testing.T, addr string) string {
	t.Helper()
	var got string
	conf := &tls.Config{InsecureSkipVerify: true, VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
		if len(raw) > 1 {
			if c, err := x509.ParseCertificate(raw[1]); err == nil {
				got = pki.Fingerprint(c)
			}
		}
		return errors.New("seen") // no client certificate: stop here
	}}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, conf)
	if err == nil {
		c.Close()
	}
	if got == "" {
		t.Fatalf("%s presented no node-issuing CA: %v", addr, err)
	}
	return got
}
