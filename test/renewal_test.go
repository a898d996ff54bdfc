package test

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// A running node renews its own server certificate at two thirds of its
// lifetime, keeps retrying while the store is unreachable, and renews as
// soon as the store is back even after the certificate expired: no restart,
// no manual re-bootstrap.
func TestAutomaticRenewal(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	home, port, env := smNode(t, proxy.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s", "--server-lifetime", "6s")
	node := harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	cfg := harness.Env("RNX_CONFIG=" + filepath.Join(home, "config", "rnx-config.yml"))
	serial := func() (string, error) {
		r := harness.Run(t, cfg, rnx, "info")
		if r.Code != 0 {
			return "", errors.New(r.Stderr)
		}
		for _, l := range strings.Split(r.Stdout, "\n") {
			if strings.HasPrefix(l, "server certificate serial ") {
				return strings.Fields(l)[3], nil
			}
		}
		return "", fmt.Errorf("no serial in %q", r.Stdout)
	}
	var first string
	harness.Eventually(t, 10*time.Second, "node up", func() (err error) { first, err = serial(); return })
	var second string
	harness.Eventually(t, 10*time.Second, "renewal at two thirds of the lifetime", func() error {
		s, err := serial()
		if err != nil {
			return err
		}
		if s == first {
			return errors.New("not renewed yet")
		}
		second = s
		return nil
	})

	// The store goes away for longer than the certificate lives.
	proxy.OnCall(func(string, int) harness.Verdict { return harness.ServerError }, nil)
	time.Sleep(8 * time.Second)
	if _, err := serial(); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("with the store away the certificate should have expired: %v", err)
	}
	if !strings.Contains(node.Output(), "refresh from the store failed; retrying") {
		t.Fatalf("the node did not report the failed refresh:\n%s", node.Output())
	}
	proxy.OnCall(nil, nil)
	harness.Eventually(t, 10*time.Second, "renewal once the store is back", func() error {
		s, err := serial()
		if err != nil {
			return err
		}
		if s == second {
			return errors.New("still the expired certificate")
		}
		return nil
	})
	if node.Cmd.ProcessState != nil {
		t.Fatal("the node exited")
	}
	_ = port
}
