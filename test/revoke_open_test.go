package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// rnx learns revocations from the nodes it talks to: a config that never
// ran `rnx config refresh` refuses node B's revoked server certificate
// after talking to node A, which has refreshed; B has not (it refreshes
// hourly), so it still serves the revoked certificate.
func TestRnxLearnsRevocationFromAnyNode(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	homeA, _, envA := smNode(t, moto.URL)
	harness.MustRun(t, envA, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	harness.Start(t, envA, joblet, "server", "--config", filepath.Join(homeA, "config", "joblet-config.yml"))
	homeB, portB, envB := smNode(t, moto.URL)
	harness.MustRun(t, envB, joblet, "certs", "bootstrap", "--refresh-interval", "1h")
	harness.Start(t, envB, joblet, "server", "--config", filepath.Join(homeB, "config", "joblet-config.yml"))

	// One config, two nodes, as an operator would write it.
	path := filepath.Join(t.TempDir(), "rnx-config.yml")
	cfg, err := config.LoadRnx(filepath.Join(homeA, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	a := *cfg.Nodes["default"]
	b := a
	b.Address, b.IsDefault = config.Address("127.0.0.1", portB), false
	cfg.Nodes = map[string]*config.Node{"a": &a, "b": &b}
	data, _ := cfg.Marshal()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	env := harness.Env("RNX_CONFIG=" + path)
	var serial string
	harness.Eventually(t, 10*time.Second, "both nodes up", func() error {
		if r := harness.Run(t, env, rnx, "--node", "a", "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		r := harness.Run(t, env, rnx, "--node", "b", "info", "--json")
		if r.Code != 0 {
			return errors.New(r.String())
		}
		_, rest, _ := strings.Cut(r.Stdout, `"serverCertSerial": "`)
		serial, _, _ = strings.Cut(rest, `"`)
		return nil
	})
	harness.MustRun(t, envA, joblet, "certs", "revoke", "--serial", serial, "--reason", "keyCompromise")
	revokedAt := time.Now()

	var refused harness.Result
	harness.Eventually(t, 15*time.Second, "rnx refuses node B after talking to node A", func() error {
		harness.MustRun(t, env, rnx, "--node", "a", "info")
		refused = harness.Run(t, env, rnx, "--node", "b", "info")
		if refused.Code == 0 {
			return errors.New("node B still accepted")
		}
		return nil
	})
	took := time.Since(revokedAt).Round(100 * time.Millisecond)
	if refused.Code != 1 || !strings.Contains(refused.Stderr, "the server's certificate has been revoked") || !strings.Contains(refused.Stderr, serial) {
		t.Fatalf("node B refused without saying its certificate was revoked: %s", refused)
	}
	// Kept in the config: the next run refuses B at the handshake.
	after, err := config.LoadRnx(path)
	if err != nil || after.Nodes["b"].CRL == "" || after.Nodes["a"].CRL != after.Nodes["b"].CRL {
		t.Fatalf("the learned CRL is not in the config: %v", err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %04o after rnx rewrote it", fi.Mode().Perm())
	}
	r := harness.Run(t, env, rnx, "--node", "b", "job", "list")
	if r.Code != 1 || !strings.Contains(r.Stderr, "the server's certificate has been revoked") {
		t.Fatalf("the next run against node B: %s", r)
	}
	harness.MustRun(t, env, rnx, "--node", "a", "job", "list")
	reliability.Record(t, "revocation", "revoke node B's server certificate; an rnx config that never ran `rnx config refresh` talks to node A (refreshes every 1 s), then to B (refreshes hourly)",
		fmt.Sprintf("B refused %v after the revocation: %s; the CRL kept in the config (mode 0600), so the next run refuses B at the handshake; A served",
			took, strings.TrimSpace(strings.TrimPrefix(refused.Stderr, "rnx: error: "))))
}
