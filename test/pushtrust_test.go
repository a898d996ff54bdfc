package test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// Rotation steps reach every node in seconds with the refresh interval at
// an hour: `rotate-ca begin --nodes` pushes the signed trust state, so a
// client holding the new CA's certificate (its config refreshed after
// begin, then promote) is served by every node within 10 s; `finish`
// pushes the state without the old CA, and every node then refuses a
// config from before the rotation. A trust state another CA signed,
// offered by a caller, is refused and the node keeps its own.
func TestRotationStepsArePushed(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	lb := fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t))
	var homes, backends, list []string
	for i := 1; i <= 3; i++ {
		home, port, env := smNode(t, moto.URL, "JOBLET_PUBLIC_ADDRESS="+lb, fmt.Sprintf("JOBLET_NODE_ID=node-%d", i))
		harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1h")
		harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
		homes = append(homes, home)
		backends = append(backends, fmt.Sprintf("127.0.0.1:%d", port))
		list = append(list, fmt.Sprintf("node-%d=127.0.0.1:%d", i, port))
	}
	harness.StartHAProxy(t, lb, backends)
	admin := filepath.Join(homes[0], "config", "rnx-config.yml")
	old := filepath.Join(t.TempDir(), "old.yml")
	harness.MustRun(t, harness.Env(), "cp", admin, old)
	at := func(cfg string) []string {
		var out []string
		for _, b := range backends {
			out = append(out, directConfig(t, cfg, lb, b))
		}
		return out
	}
	all := func(cfgs []string, want bool, what string) time.Duration {
		t.Helper()
		start := time.Now()
		harness.Eventually(t, 10*time.Second, what, func() error {
			for i, c := range cfgs {
				r := harness.Run(t, harness.Env(), rnx, "--config", c, "job", "list")
				if (r.Code == 0) != want {
					return fmt.Errorf("node-%d: %s", i+1, r)
				}
			}
			return nil
		})
		return time.Since(start)
	}
	all(at(old), true, "the fleet up")
	_, _, env := smNode(t, moto.URL, "JOBLET_HOME="+homes[0], "JOBLET_NODES="+strings.Join(list, ","))
	begin := harness.MustRun(t, env, joblet, "certs", "rotate-ca", "begin", "--rnx-config", admin)
	if !strings.Contains(begin.Stdout, "pushed to 3 of 3 nodes") {
		t.Fatalf("begin did not push to the 3 nodes: %s", begin)
	}
	for i, h := range homes {
		if cas, _ := pki.ParseCerts([]byte(serverConfig(t, h).Security.CACert)); len(cas) != 2 {
			n := len(cas)
			t.Fatalf("node-%d trusts %d CAs after the pushed begin, want 2", i+1, n)
		}
	}
	// A config refreshed now holds the new CA's certificate (pending):
	// every node serves it at once.
	fresh := filepath.Join(t.TempDir(), "fresh.yml")
	harness.MustRun(t, harness.Env(), "cp", admin, fresh)
	harness.MustRun(t, harness.Env(append(env, "RNX_CONFIG="+fresh)...), rnx, "config", "refresh")
	took := all(at(fresh), true, "every node serving the new CA's certificate after the pushed begin")
	t.Logf("begin: every node served the new CA's certificate within %v", took.Round(time.Millisecond))
	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "promote", "--rnx-config", fresh)
	harness.MustRun(t, harness.Env(append(env, "RNX_CONFIG="+fresh)...), rnx, "config", "refresh")
	fin := harness.MustRun(t, env, joblet, "certs", "rotate-ca", "finish", "--force", "--rnx-config", fresh)
	if !strings.Contains(fin.Stdout, "pushed to 3 of 3 nodes") {
		t.Fatalf("finish did not push to the 3 nodes: %s", fin)
	}
	took = all(at(old), false, "every node refusing a config from before the rotation after the pushed finish")
	t.Logf("finish: every node refused the old config within %v", took.Round(time.Millisecond))
	all(at(fresh), true, "the refreshed config still served")

	// A forged trust state offered by a caller: refused, logged, nothing changed.
	before := serverConfig(t, homes[1]).Security.TrustState
	evil := newEvilCA(t)
	forged, err := pki.SignTrust(context.Background(), pki.NewTrustState("joblet", 1<<40, []*x509.Certificate{evil.Cert}, []*x509.Certificate{evil.Cert}, nil, time.Now()), evil)
	if err != nil {
		t.Fatal(err)
	}
	if err := offerTrustTo(t, at(fresh)[1], forged); err == nil || !strings.Contains(err.Error(), "not signed by a root") {
		t.Fatalf("a forged trust state offered to node-2: %v", err)
	}
	if serverConfig(t, homes[1]).Security.TrustState != before {
		t.Fatal("node-2's trust state changed after a forged offer")
	}
	if r := harness.Run(t, harness.Env(), rnx, "--config", at(fresh)[1], "job", "list"); r.Code != 0 {
		t.Fatal(errors.New(r.String()))
	}
}

// offerTrustTo hands one node (the config's selected entry) a trust state
// as any caller can.
func offerTrustTo(t *testing.T, cfgPath string, trust []byte) error {
	t.Helper()
	cfg, err := config.LoadRnx(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	name, node, err := cfg.Select("")
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(name, node)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Node.OfferCRL(ctx, &pb.OfferCRLRequest{TrustState: trust})
	return err
}
