package test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// requestLoop is a client issuing requests through the balancer at a fixed
// rate, each on a new connection (so every request is a new TLS handshake
// that sees the nodes' current certificates), re-reading its config file
// each time (so a refreshed config takes effect).
type requestLoop struct {
	ok, failed atomic.Int64
	mu         sync.Mutex
	errs       []string
	stop       chan struct{}
	done       chan struct{}
	start      time.Time
}

func startLoop(t *testing.T, cfgPath string, every time.Duration) *requestLoop {
	l := &requestLoop{stop: make(chan struct{}), done: make(chan struct{}), start: time.Now()}
	go func() {
		defer close(l.done)
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			if err := oneRequest(cfgPath); err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				l.errs = append(l.errs, time.Now().Format("15:04:05.000")+" "+err.Error())
				l.mu.Unlock()
			} else {
				l.ok.Add(1)
			}
		}
	}()
	return l
}

func oneRequest(cfgPath string) error {
	cfg, err := config.LoadRnx(cfgPath)
	if err != nil {
		return err
	}
	name, node, err := cfg.Select("")
	if err != nil {
		return err
	}
	c, err := client.Dial(name, node)
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Info(ctx)
	return err
}

// finish stops the loop and returns requests, failures and the rate.
func (l *requestLoop) finish() (total, failed int64, rate float64, errs []string) {
	close(l.stop)
	<-l.done
	total = l.ok.Load() + l.failed.Load()
	return total, l.failed.Load(), float64(total) / time.Since(l.start).Seconds(), l.errs
}

type fleetNode struct {
	home, addr string
	env        []string
	proc       *harness.Proc
}

func (n fleetNode) config() string { return filepath.Join(n.home, "config", "joblet-config.yml") }

// info asks one node directly (not through the balancer) with cfgPath's
// credentials.
func (n fleetNode) info(t *testing.T, cfgPath, lb string) (nodeID, issuer, serial string, err error) {
	direct := directConfig(t, cfgPath, lb, n.addr)
	cfg, err := config.LoadRnx(direct)
	if err != nil {
		return "", "", "", err
	}
	name, node, _ := cfg.Select("")
	c, err := client.Dial(name, node)
	if err != nil {
		return "", "", "", err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	i, err := c.Info(ctx)
	if err != nil {
		return "", "", "", err
	}
	return i.NodeId, i.ServerCertIssuerSha256, i.ServerCertSerial, nil
}

func rotationFleet(t *testing.T, extra ...string) (nodes []fleetNode, lb string) {
	joblet, _ := harness.Bins(t)
	lb = fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t))
	var backends []string
	for i := 1; i <= 3; i++ {
		home, port, env := smNode(t, motoFor(t).URL, append([]string{"JOBLET_PUBLIC_ADDRESS=" + lb, fmt.Sprintf("JOBLET_NODE_ID=node-%d", i)}, extra...)...)
		harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
		n := fleetNode{home: home, addr: fmt.Sprintf("127.0.0.1:%d", port), env: env}
		n.proc = harness.Start(t, env, joblet, "server", "--config", n.config())
		nodes = append(nodes, n)
		backends = append(backends, n.addr)
	}
	harness.StartHAProxy(t, lb, backends)
	return nodes, lb
}

func TestRotationWithoutDowntime(t *testing.T) {
	resetMoto(t)
	joblet, rnx := harness.Bins(t)
	nodes, lb := rotationFleet(t)
	env := nodes[0].env
	clientCfg := filepath.Join(t.TempDir(), "rnx-config.yml")
	b, _ := os.ReadFile(filepath.Join(nodes[0].home, "config", "rnx-config.yml"))
	os.WriteFile(clientCfg, b, 0o600)
	oldCfg := filepath.Join(t.TempDir(), "old-rnx-config.yml")
	os.WriteFile(oldCfg, b, 0o600)
	harness.Eventually(t, 15*time.Second, "fleet up", func() error { return oneRequest(clientCfg) })

	waitNodes := func(what string, ok func(i int, issuer, serial string) bool) {
		t.Helper()
		harness.Eventually(t, 20*time.Second, what, func() error {
			for i, n := range nodes {
				_, issuer, serial, err := n.info(t, clientCfg, lb)
				if err != nil {
					return err
				}
				if !ok(i, issuer, serial) {
					return fmt.Errorf("node %d not yet", i+1)
				}
			}
			return nil
		})
	}
	status := func() string { return harness.MustRun(t, env, joblet, "certs", "rotate-ca", "status").Stdout }
	refresh := func() {
		harness.MustRun(t, harness.Env(append(env, "RNX_CONFIG="+clientCfg)...), rnx, "config", "refresh")
	}
	pids := map[int]bool{}
	for _, n := range nodes {
		pids[n.proc.Cmd.Process.Pid] = true
	}

	loop := startLoop(t, clientCfg, 40*time.Millisecond) // 25 requests per second

	out := harness.MustRun(t, env, joblet, "certs", "rotate-ca", "begin").Stdout
	if !strings.Contains(out, "phase begun") {
		t.Fatalf("begin:\n%s", out)
	}
	refresh()
	time.Sleep(3 * time.Second) // nodes refresh every second: all trust both CAs

	out = harness.MustRun(t, env, joblet, "certs", "rotate-ca", "promote").Stdout
	if !strings.Contains(out, "phase promoted") {
		t.Fatalf("promote:\n%s", out)
	}
	var st struct {
		Current struct{ Sha256 string }
	}
	if err := json.Unmarshal([]byte(harness.MustRun(t, env, joblet, "certs", "rotate-ca", "status", "--json").Stdout), &st); err != nil {
		t.Fatal(err)
	}
	newCA := st.Current.Sha256
	waitNodes("every node serving a certificate from the new CA", func(_ int, issuer, _ string) bool { return issuer == newCA })
	var addrs []string
	for _, n := range nodes {
		addrs = append(addrs, n.addr)
	}
	probe := harness.MustRun(t, env, joblet, "certs", "rotate-ca", "status", "--nodes", strings.Join(addrs, ","), "--rnx-config", directConfig(t, clientCfg, lb, nodes[0].addr)).Stdout
	for i := range nodes {
		if !strings.Contains(probe, fmt.Sprintf("node-%d: serves a certificate from the current CA", i+1)) {
			t.Errorf("status --nodes does not report node-%d on the current CA:\n%s", i+1, probe)
		}
	}
	refresh()

	// A manual renewal on every node, picked up without a restart.
	serials := map[int]string{}
	for i, n := range nodes {
		_, _, serials[i], _ = n.info(t, clientCfg, lb)
		harness.MustRun(t, n.env, joblet, "certs", "renew", "--config", n.config())
	}
	waitNodes("every node serving its renewed certificate", func(i int, _, serial string) bool { return serial != serials[i] })

	out = harness.MustRun(t, env, joblet, "certs", "rotate-ca", "finish").Stdout
	if !strings.Contains(out, "phase stable") || strings.Count(out, "trusted") != 1 {
		t.Fatalf("finish:\n%s", out)
	}
	time.Sleep(3 * time.Second) // nodes drop the old CA
	refresh()
	time.Sleep(time.Second)

	total, failed, rate, errs := loop.finish()
	t.Logf("rotation under load: %d requests at %.1f/s through haproxy, %d failed", total, rate, failed)
	for _, e := range errs {
		t.Log(e)
	}
	if failed != 0 || rate < 20 {
		t.Fatalf("%d of %d requests failed (%.1f/s): want 0 at >= 20/s", failed, total, rate)
	}
	reliability.Record(t, "rotation", "rotate-ca begin, promote, finish on 3 nodes behind HAProxy under load",
		fmt.Sprintf("%d requests at %.0f/s, %d failed, no node restarted", total, rate, failed))
	for _, n := range nodes {
		if n.proc.Cmd.ProcessState != nil || !pids[n.proc.Cmd.Process.Pid] {
			t.Fatal("a node restarted or exited")
		}
	}
	if !strings.Contains(status(), "phase stable") {
		t.Fatal(status())
	}
	// A client certificate signed only by the old CA is now refused.
	r := harness.Run(t, harness.Env(), rnx, "--config", directConfig(t, oldCfg, lb, nodes[1].addr), "info")
	if r.Code == 0 {
		t.Fatal("an old-CA configuration still works after finish")
	}
	// Its client certificate is refused even with the new trust.
	mixed := directConfig(t, oldCfg, lb, nodes[1].addr)
	oc, _ := config.LoadRnx(mixed)
	nc, _ := config.LoadRnx(clientCfg)
	for k := range oc.Nodes {
		oc.Nodes[k].CA = nc.Nodes["default"].CA
	}
	mb, _ := oc.Marshal()
	os.WriteFile(mixed, mb, 0o600)
	r = harness.Run(t, harness.Env(), rnx, "--config", mixed, "info")
	if r.Code != 1 || !strings.Contains(r.Stderr, "server rejected this client certificate") {
		t.Fatalf("old client certificate after finish: %s", r)
	}
	reliability.Record(t, "rotation", "a client certificate signed by the old CA, after finish", "refused: "+lastLine(r.Stderr))

	// Contrast: FORCE_REGENERATE replaces the CA at once. Clients keep the
	// config they have until they refresh it.
	loop = startLoop(t, clientCfg, 40*time.Millisecond)
	time.Sleep(time.Second)
	harness.MustRun(t, append(env, "FORCE_REGENERATE=true"), joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	time.Sleep(4 * time.Second)
	refresh()
	time.Sleep(2 * time.Second)
	total, failed, rate, _ = loop.finish()
	t.Logf("FORCE_REGENERATE under load: %d requests at %.1f/s, %d failed", total, rate, failed)
	if failed == 0 {
		t.Error("FORCE_REGENERATE is an immediate cut-over and should fail requests until clients refresh")
	}
	harness.Eventually(t, 10*time.Second, "fleet serving after the clients refreshed", func() error { return oneRequest(clientCfg) })
}
