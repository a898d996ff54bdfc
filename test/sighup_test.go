package test

import (
	"errors"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// SIGHUP makes a node refresh at once: with an hour-long refresh interval,
// a promoted CA reaches the node only when it is told to look.
func TestSIGHUPRefreshes(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	home, port, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1h")
	node := harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	n := fleetNode{home: home, addr: "127.0.0.1:" + itoa(port), env: env}
	cfg := filepath.Join(home, "config", "rnx-config.yml")
	var before string
	harness.Eventually(t, 10*time.Second, "node up", func() (err error) { _, before, _, err = n.info(t, cfg, "unused"); return })
	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "begin")
	_, rnx := harness.Bins(t)
	harness.MustRun(t, append(env, "RNX_CONFIG="+cfg), rnx, "config", "refresh") // trust both, as the runbook says
	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "promote")
	time.Sleep(1500 * time.Millisecond)
	if _, issuer, _, err := n.info(t, cfg, "unused"); err != nil || issuer != before {
		t.Fatalf("the node changed before SIGHUP (issuer %s, err %v)", issuer, err)
	}
	node.Cmd.Process.Signal(syscall.SIGHUP)
	harness.Eventually(t, 5*time.Second, "renewal after SIGHUP", func() error {
		_, issuer, _, err := n.info(t, cfg, "unused")
		if err != nil {
			return err
		}
		if issuer == before {
			return errors.New("still the old CA's certificate")
		}
		return nil
	})
	if node.Cmd.ProcessState != nil {
		t.Fatal("SIGHUP ended the node")
	}
}

func itoa(i int) string { return strconv.Itoa(i) }
