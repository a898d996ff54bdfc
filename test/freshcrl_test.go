package test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/test/harness"
)

// A node bootstrapped after the CRL secret was deleted never serves a
// revoked client certificate: its signed trust state names the CRL, so it
// refuses every call (saying why) until it holds that CRL; once the CRL is
// back it serves the valid and refuses the revoked.
func TestFreshNodeWithoutTheCRLServesNoRevoked(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	home1, _, env1 := smNode(t, moto.URL)
	harness.MustRun(t, env1, joblet, "certs", "bootstrap")
	rc, err := config.LoadRnx(filepath.Join(home1, "config", "rnx-config-reader.yml"))
	if err != nil {
		t.Fatal(err)
	}
	certFile := filepath.Join(t.TempDir(), "reader.pem")
	os.WriteFile(certFile, []byte(rc.Nodes["default"].Cert), 0o600)
	harness.MustRun(t, env1, joblet, "certs", "revoke", "--cert", certFile, "--reason", "keyCompromise")
	c, ctx := smClient(moto.URL), context.Background()
	if _, err := c.DeleteSecret(ctx, &sm.DeleteSecretInput{SecretId: aws.String("joblet/crl"), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}

	home2, port2, env2 := smNode(t, moto.URL)
	harness.MustRun(t, env2, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	if serverConfig(t, home2).Security.CRL != "" {
		t.Fatal("the fresh node found a CRL in the store")
	}
	srv := harness.Start(t, env2, joblet, "server", "--config", filepath.Join(home2, "config", "joblet-config.yml"))
	// Clients of node 2: node 1's configs, pointed at it, without a CRL to
	// carry (a client that never saw the revocation).
	point := func(name string) []string {
		cfg, err := config.LoadRnx(filepath.Join(home1, "config", name))
		if err != nil {
			t.Fatal(err)
		}
		for k, n := range cfg.Nodes {
			n.Address, n.CRL = "127.0.0.1:"+itoa(port2), ""
			cfg.Nodes[k] = n
		}
		p := filepath.Join(t.TempDir(), name)
		b, _ := cfg.Marshal()
		os.WriteFile(p, b, 0o600)
		return harness.Env("RNX_CONFIG=" + p)
	}
	reader, admin := point("rnx-config-reader.yml"), point("rnx-config.yml")
	harness.Eventually(t, 20*time.Second, "the node says it lacks the CRL", func() error {
		if !strings.Contains(srv.Output(), "refusing every call") {
			return errors.New("not yet")
		}
		return nil
	})
	for i := 0; i < 3; i++ {
		if r := harness.Run(t, reader, rnx, "info"); r.Code == 0 {
			t.Fatalf("the revoked reader was served by a node without the CRL: %s", r)
		}
		if r := harness.Run(t, admin, rnx, "info"); r.Code == 0 || !strings.Contains(r.String(), "CRL") {
			t.Fatalf("a call was served (or refused without naming the CRL) by a node without the CRL: %s", r)
		}
		time.Sleep(time.Second)
	}
	// The operator writes the CRL again (revoking again merges nothing
	// lost here: the serial is given again): the node takes it and serves.
	harness.MustRun(t, env1, joblet, "certs", "revoke", "--cert", certFile, "--reason", "keyCompromise")
	harness.Eventually(t, 20*time.Second, "the node serving once it has the CRL", func() error {
		if r := harness.Run(t, admin, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	if r := harness.Run(t, reader, rnx, "info"); r.Code == 0 {
		t.Fatalf("the revoked reader was served after the CRL came back: %s", r)
	}
}
