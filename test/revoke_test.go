package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

func TestRevocation(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	home, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	admin := harness.Env("RNX_CONFIG=" + filepath.Join(home, "config", "rnx-config.yml"))
	reader := harness.Env("RNX_CONFIG=" + filepath.Join(home, "config", "rnx-config-reader.yml"))
	harness.Eventually(t, 10*time.Second, "node up", func() error {
		if r := harness.Run(t, reader, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})

	// A role's client certificate, revoked: refused after the node's next
	// refresh, while other roles go on.
	rc, _ := config.LoadRnx(filepath.Join(home, "config", "rnx-config-reader.yml"))
	certFile := filepath.Join(t.TempDir(), "reader.pem")
	os.WriteFile(certFile, []byte(rc.Nodes["default"].Cert), 0o600)
	r := harness.MustRun(t, env, joblet, "certs", "revoke", "--cert", certFile, "--reason", "keyCompromise")
	revokedAt := time.Now()
	if !strings.Contains(r.Stdout, "revoked serial") {
		t.Fatalf("%s", r)
	}
	harness.Eventually(t, 10*time.Second, "the reader refused", func() error {
		r := harness.Run(t, reader, rnx, "info")
		if r.Code == 0 {
			return errors.New("still accepted")
		}
		if !strings.Contains(r.Stderr, "server rejected this client certificate (role reader, serial ") || !strings.Contains(r.Stderr, ") as revoked") || !strings.Contains(r.Stderr, "joblet certs reissue --role reader") {
			return errors.New(r.String())
		}
		return nil
	})
	// Refreshing fetches the same revoked certificate: it fails and says
	// what does help.
	refresh := harness.Run(t, append(append([]string{}, env...), "RNX_CONFIG="+filepath.Join(home, "config", "rnx-config-reader.yml")), rnx, "config", "refresh")
	if refresh.Code != 1 || !strings.Contains(refresh.Stderr, "was revoked") || !strings.Contains(refresh.Stderr, "(keyCompromise)") || !strings.Contains(refresh.Stderr, "joblet certs reissue --role reader") {
		t.Fatalf("config refresh of a revoked role: %s", refresh)
	}
	// Now the config's CRL lists it: rnx says so without a guess.
	if r := harness.Run(t, reader, rnx, "info"); r.Code != 1 || !strings.Contains(r.Stderr, "was revoked on") {
		t.Fatalf("rnx with a config whose CRL lists its certificate: %s", r)
	}
	harness.MustRun(t, admin, rnx, "info")
	reliability.Record(t, "revocation", "revoke the reader's client certificate (node refreshes every 1 s)",
		fmt.Sprintf("reader refused within %v, no restart; admin still served", time.Since(revokedAt).Round(100*time.Millisecond)))
	st := harness.Run(t, env, joblet, "certs", "status")
	if st.Code != 2 || !strings.Contains(st.Stdout, "🚫 revoked serial") || !strings.Contains(st.Stdout, "Client Certificate (reader): is revoked") {
		t.Fatalf("status: %s", st)
	}

	// The role gets a new key and certificate without a CA rotation; its
	// users refresh their config and are served again.
	r = harness.MustRun(t, env, joblet, "certs", "reissue", "--role", "reader")
	if !strings.Contains(r.Stdout, "reader client certificate re-issued") {
		t.Fatalf("%s", r)
	}
	harness.MustRun(t, append(append([]string{}, env...), "RNX_CONFIG="+filepath.Join(home, "config", "rnx-config-reader.yml")), rnx, "config", "refresh")
	harness.Eventually(t, 10*time.Second, "the reader served with its re-issued certificate", func() error {
		if r := harness.Run(t, reader, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	// The operator's copy holds every role: it is refreshed too.
	harness.MustRun(t, append(append([]string{}, env...), "RNX_CONFIG="+filepath.Join(home, "config", "rnx-config.yml")), rnx, "config", "refresh")
	if st := harness.Run(t, env, joblet, "certs", "status"); st.Code != 0 || !strings.Contains(st.Stdout, "🚫 revoked serial") {
		t.Fatalf("status after the re-issue (the revocation listed, nothing wrong): %s", st)
	}
	reliability.Record(t, "revocation", "re-issue the revoked reader's certificate (certs reissue --role reader), then rnx config refresh",
		"the reader is served again with a new key and certificate; the old serial stays revoked; status exit 0; the CA did not change")

	// A node's server certificate, revoked: rnx refuses it once its config
	// carries the CRL; the node renews it on its next refresh (SIGHUP here:
	// this node refreshes hourly).
	home2, port2, env2 := smNode(t, moto.URL)
	harness.MustRun(t, env2, joblet, "certs", "bootstrap", "--refresh-interval", "1h")
	node2 := harness.Start(t, env2, joblet, "server", "--config", filepath.Join(home2, "config", "joblet-config.yml"))
	// A joined node keeps no client config: the operator gets one from
	// the store.
	cfg2 := filepath.Join(t.TempDir(), "rnx-config.yml")
	harness.MustRun(t, append(env2, "RNX_CONFIG="+cfg2), rnx, "config", "init", "--role", "admin", "--address", fmt.Sprintf("127.0.0.1:%d", port2))
	admin2 := harness.Env("RNX_CONFIG=" + cfg2)
	var serial string
	harness.Eventually(t, 10*time.Second, "node 2 up", func() error {
		r := harness.Run(t, admin2, rnx, "info")
		if r.Code != 0 {
			return errors.New(r.String())
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(l, "server certificate serial ") {
				serial = strings.TrimSuffix(strings.Fields(l)[3], ",")
			}
		}
		return nil
	})
	harness.MustRun(t, env2, joblet, "certs", "revoke", "--serial", serial)
	harness.MustRun(t, append(env2, "RNX_CONFIG="+cfg2), rnx, "config", "refresh")
	r = harness.Run(t, admin2, rnx, "info")
	if r.Code != 1 || !strings.Contains(r.Stderr, "the server's certificate has been revoked") {
		t.Fatalf("revoked server certificate: %s", r)
	}
	node2.Cmd.Process.Signal(syscall.SIGHUP)
	harness.Eventually(t, 10*time.Second, "node 2 renewed its revoked certificate", func() error {
		if r := harness.Run(t, admin2, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	if !strings.Contains(node2.Output(), `reason="it was revoked"`) {
		t.Fatalf("node 2 did not say why it renewed:\n%s", node2.Output())
	}
	reliability.Record(t, "revocation", "revoke a node's server certificate", "rnx with the refreshed config refuses it (\"the server's certificate has been revoked\"); the node renews on its next refresh and serves again")
	// Revoking twice changes nothing.
	harness.MustRun(t, env2, joblet, "certs", "revoke", "--serial", serial)
}
