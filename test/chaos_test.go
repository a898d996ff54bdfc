package test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/test/harness"
)

// The chaos run of issue 23: three nodes on moto behind HAProxy, client
// loops with valid, revoked and retired configs, and, at random from one
// seed for the whole run, SIGKILLed and restarted nodes, store faults
// through the recording proxy, CA rotation steps, role re-issues and
// revocations, connection floods and stream floods. Every call and every
// fault is recorded with its time; the invariants are judged from the
// records (chaos_judge_test.go), and the report is docs/CHAOS.md when
// JOBLET_CHAOS_REPORT names it (scripts/chaos.sh).
//
// JOBLET_CHAOS_DURATION (default 90s: the run in the test command) and
// JOBLET_CHAOS_SEED (default 1) set the run; the seed is printed so a
// failure can be replayed: it fixes every random choice of the injectors
// (what, when, where), not the machine's timing.
func TestChaos(t *testing.T) {
	dur, seed := 90*time.Second, uint64(1)
	if v := os.Getenv("JOBLET_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			t.Fatalf("JOBLET_CHAOS_DURATION=%q: use a duration such as 30m", v)
		}
		dur = d
	}
	if v := os.Getenv("JOBLET_CHAOS_SEED"); v != "" {
		s, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("JOBLET_CHAOS_SEED=%q: use a non-negative integer", v)
		}
		seed = s
	}
	t.Logf("chaos: seed %d, duration %v (replay: scripts/chaos.sh --duration %v --seed %d)", seed, dur, dur, seed)
	resetMoto(t)
	harness.RaiseNoFile(t, 4096)
	c := newChaos(t, seed, dur)
	c.setUp()
	c.run()
	c.converge()
	rep := c.judge()
	for _, v := range rep.violations {
		t.Errorf("violation: %s: %s", v.invariant, v.detail)
	}
	t.Log(rep.summary(c))
	if p := os.Getenv("JOBLET_CHAOS_REPORT"); p != "" {
		if err := os.WriteFile(p, []byte(rep.markdown(c)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// chaosInterval is a stretch of time something lasted; an end of zero is
// still going.
type chaosInterval struct {
	from, to time.Time
	what     string
}

func (iv chaosInterval) overlaps(from, to time.Time) bool {
	end := iv.to
	if end.IsZero() {
		end = time.Now().Add(time.Hour)
	}
	return iv.from.Before(to) && end.After(from)
}

type chaosNode struct {
	id, home, addr string
	env            []string

	mu   sync.Mutex
	proc *harness.Proc
	up   bool
	// down: from the SIGKILL until the restarted process listens; starts:
	// when each process was started.
	down   []chaosInterval
	starts []time.Time
}

func (n *chaosNode) config() string { return filepath.Join(n.home, "config", "joblet-config.yml") }

// chaosClient is one rnx config a loop calls with: through the balancer
// (valid and never-refreshed clients) or each node in turn (revoked and
// retired ones, so the node that served is known).
type chaosClient struct {
	name, class string
	// path is the config (through the balancer); direct, per node address,
	// copies pointing at one node each.
	path   string
	direct map[string]string

	mu sync.Mutex // a call and a refresh of this config never overlap
	// stale: windows in which the contract lets this config fail, from the
	// operator's first try of a step that cuts it off (a revocation of its
	// role, an abort of the rotation it refreshed into) until its refresh.
	stale []chaosInterval
	// since: when a revoked or retired config must be refused (from the
	// step's success); validUntil: when a never-refreshed config stops
	// being promised service (the first try of finish).
	since, validUntil time.Time
	serial            string
}

type chaosCall struct {
	client        *chaosClient
	class         string // the client's class when the call was made
	start, end    time.Time
	ok            bool
	node, errText string
	addr          string // direct calls: the node's address
}

type chaosRun struct {
	t          *testing.T
	seed       uint64
	dur        time.Duration
	joblet     string
	rnx        string
	proxy      *harness.AWSProxy
	opEnv      []string
	storeEnv   []string
	lb         string
	interval   time.Duration
	bound      time.Duration
	nodes      []*chaosNode
	started    time.Time
	faultsDone time.Time

	mu       sync.Mutex
	valid    []*chaosClient
	never    *chaosClient
	revoked  []*chaosClient
	retired  []*chaosClient
	calls    []chaosCall
	store    []chaosInterval // store faults
	floods   []chaosInterval // connection floods
	counts   map[string]int
	timeline []string
	opGaveUp []string
	samples  int
	// sampleAPI, when set (a test), is the client the store sampler reads
	// moto with.
	sampleAPI *sm.Client
	storeBad  []chaosViolation // found by the sampler
	revokedSN []string         // serials whose revocation succeeded
	storeCall map[string]int   // store calls through the proxy, by action
	converged []string

	// faultMode is the store fault the proxy applies now ("" none).
	faultMode string
	faultRng  *rand.Rand
}

func newChaos(t *testing.T, seed uint64, dur time.Duration) *chaosRun {
	joblet, rnx := harness.Bins(t)
	interval := 2 * time.Second
	return &chaosRun{t: t, seed: seed, dur: dur, joblet: joblet, rnx: rnx, interval: interval,
		// The documented bound (one security.refreshInterval, +10% jitter),
		// plus one retry after a failed refresh (its backoff is capped at the
		// interval), plus this machine's slack: a loaded 2-core machine
		// takes seconds to start a process and handshake.
		bound:  interval*11/10 + interval + 15*time.Second,
		counts: map[string]int{}, storeCall: map[string]int{}, faultRng: rand.New(rand.NewPCG(seed, 99))}
}

func (c *chaosRun) rng(stream uint64) *rand.Rand { return rand.New(rand.NewPCG(c.seed, stream)) }

func (c *chaosRun) count(what string) {
	c.mu.Lock()
	c.counts[what]++
	c.mu.Unlock()
}

func (c *chaosRun) event(format string, a ...any) {
	line := fmt.Sprintf("%6.1fs ", time.Since(c.started).Seconds()) + fmt.Sprintf(format, a...)
	c.mu.Lock()
	c.timeline = append(c.timeline, line)
	c.mu.Unlock()
	if testing.Verbose() {
		c.t.Log(line)
	}
}

// run executes a binary with a deadline, from any goroutine.
func run(env []string, timeout time.Duration, bin string, args ...string) harness.Result {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		code = -1
		errb.WriteString(err.Error())
	}
	return harness.Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// setUp: the operator creates the fleet from its machine (certs init),
// three nodes join and serve behind HAProxy; every store call, the
// operator's included, goes through the proxy that injects the faults.
func (c *chaosRun) setUp() {
	t := c.t
	c.proxy = harness.StartAWSProxy(t, motoFor(t).URL)
	c.proxy.OnCall(func(action string, n int) harness.Verdict { return c.verdict() }, nil)
	c.lb = fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t))
	opHome := t.TempDir()
	c.storeEnv = append(harness.AWSEnv(c.proxy.URL), "USE_SECRETS_MANAGER=true", "JOBLET_TIMEOUT=30s")
	c.opEnv = harness.Env(append(c.storeEnv, "JOBLET_HOME="+opHome)...)
	out := filepath.Join(opHome, "configs")
	harness.MustRun(t, c.opEnv, c.joblet, "certs", "init", "--address", c.lb, "--out", out)
	var backends []string
	for i := 1; i <= 3; i++ {
		home, port, env := smNode(t, c.proxy.URL, "JOBLET_PUBLIC_ADDRESS="+c.lb, fmt.Sprintf("JOBLET_NODE_ID=node-%d", i))
		harness.MustRun(t, env, c.joblet, "certs", "bootstrap", "--refresh-interval", c.interval.String())
		n := &chaosNode{id: fmt.Sprintf("node-%d", i), home: home, addr: fmt.Sprintf("127.0.0.1:%d", port), env: env}
		n.proc = harness.Start(t, env, c.joblet, "server", "--config", n.config())
		n.up = true
		n.starts = append(n.starts, time.Now())
		c.nodes = append(c.nodes, n)
		backends = append(backends, n.addr)
	}
	harness.StartHAProxy(t, c.lb, backends)
	dir := t.TempDir()
	for _, f := range []struct{ name, file string }{{"admin", "rnx-config.yml"}, {"maintainer", "rnx-config-maintainer.yml"},
		{"developer", "rnx-config-developer.yml"}, {"reader", "rnx-config-reader.yml"}} {
		b, err := os.ReadFile(filepath.Join(out, f.file))
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, f.name+".yml")
		os.WriteFile(p, b, 0o600)
		c.valid = append(c.valid, &chaosClient{name: f.name, class: "valid", path: p})
	}
	for _, n := range c.nodes {
		harness.Eventually(t, 30*time.Second, n.id+" serving", func() error {
			r := run(harness.Env(), 30*time.Second, c.rnx, "--config", c.directCopy(c.valid[0].path, n.addr), "info")
			if r.Code != 0 {
				return fmt.Errorf("%s", r)
			}
			return nil
		})
	}
	c.never = c.snapshot(c.valid[1], "never-refreshed", "never refreshed")
	c.sampleStore() // the initial CA starts the lineage
}

// directCopy writes a copy of the config at path that names node address
// instead of the balancer.
func (c *chaosRun) directCopy(path, addr string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return path
	}
	f, err := os.CreateTemp(c.t.TempDir(), "direct-*.yml")
	if err != nil {
		return path
	}
	f.Write([]byte(strings.ReplaceAll(string(b), c.lb, addr)))
	f.Close()
	return f.Name()
}

// snapshot copies a client's config as it is now into a new client of
// class, with a direct copy for every node.
func (c *chaosRun) snapshot(from *chaosClient, name, class string) *chaosClient {
	from.mu.Lock()
	b, _ := os.ReadFile(from.path)
	from.mu.Unlock()
	f, _ := os.CreateTemp(c.t.TempDir(), name+"-*.yml")
	f.Write(b)
	f.Close()
	cl := &chaosClient{name: name, class: class, path: f.Name(), direct: map[string]string{}}
	for _, n := range c.nodes {
		cl.direct[n.addr] = c.directCopy(f.Name(), n.addr)
	}
	if cfg, err := config.LoadRnx(f.Name()); err == nil {
		if _, node, err := cfg.Select(""); err == nil {
			if certs, err := parseCertsPEM(node.Cert); err == nil && len(certs) > 0 {
				cl.serial = certs[0].SerialNumber.Text(16)
			}
		}
	}
	return cl
}

// verdict is the proxy's answer to one store call under the current fault.
func (c *chaosRun) verdict() harness.Verdict {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch c.faultMode {
	case "HTTP 500":
		if c.faultRng.IntN(2) == 0 {
			return harness.ServerError
		}
	case "HTTP 503":
		if c.faultRng.IntN(2) == 0 {
			return harness.Unavailable
		}
	case "throttling":
		return harness.Throttle
	case "latency 1s":
		return harness.Slow
	case "unreachable":
		return harness.Reset
	case "answer cut":
		if c.faultRng.IntN(2) == 0 {
			return harness.Truncate
		}
	}
	return harness.Forward
}

// run starts the client loops and the injectors, and stops them all after
// the duration; every node is then up and the store healthy.
func (c *chaosRun) run() {
	c.started = time.Now()
	end := c.started.Add(c.dur)
	stop := make(chan struct{})
	var loops, injectors sync.WaitGroup
	for i, cl := range c.valid {
		loops.Add(1)
		go func() { defer loops.Done(); c.clientLoop(cl, stop, c.rng(uint64(10+i))) }()
	}
	loops.Add(1)
	go func() { defer loops.Done(); c.directLoop(stop, c.rng(20)) }()
	sleepUntil := func(r *rand.Rand, lo, hi time.Duration) bool {
		d := lo + time.Duration(r.Int64N(int64(hi-lo)))
		return time.Now().Add(d).Before(end) && sleep(stop, d)
	}
	injectors.Add(5)
	go func() { // SIGKILL and restart
		defer injectors.Done()
		r := c.rng(1)
		for sleepUntil(r, 6*time.Second, 16*time.Second) {
			c.killAndRestart(r)
		}
	}()
	go func() { // store faults
		defer injectors.Done()
		r := c.rng(2)
		modes := []string{"HTTP 500", "HTTP 503", "throttling", "latency 1s", "unreachable", "answer cut"}
		for sleepUntil(r, 3*time.Second, 10*time.Second) {
			mode := modes[r.IntN(len(modes))]
			d := time.Second + time.Duration(r.Int64N(int64(5*time.Second)))
			c.storeFault(mode, d)
		}
	}()
	go func() { // the operator: rotations, re-issues, revocations
		defer injectors.Done()
		r := c.rng(3)
		for sleepUntil(r, 4*time.Second, 10*time.Second) {
			c.operatorStep(r)
		}
	}()
	go func() { // connection and stream floods
		defer injectors.Done()
		r := c.rng(4)
		for sleepUntil(r, 5*time.Second, 15*time.Second) {
			if r.IntN(2) == 0 {
				c.connFlood(r)
			} else {
				c.streamFlood(r)
			}
		}
	}()
	go func() { // the store sampler: lineage, labelled versions, CRL serials
		defer injectors.Done()
		for sleep(stop, 2*time.Second) && time.Now().Before(end) {
			c.sampleStore()
		}
	}()
	sleep(nil, time.Until(end))
	close(stop)
	injectors.Wait()
	c.faultsDone = time.Now()
	c.event("faults stopped")
	// Every node up again (a kill in progress restarted it already).
	for _, n := range c.nodes {
		n.mu.Lock()
		exited := !n.up
		n.mu.Unlock()
		if exited {
			c.restart(n)
		}
	}
	loops.Wait()
}

// sleep waits d, or until stop is closed (false).
func sleep(stop chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	select {
	case <-stop:
		return false
	case <-time.After(d):
		return true
	}
}

// clientLoop: a valid client (or, for maintainer, also the never-refreshed
// snapshot of the current rotation) calls through the balancer: rnx info or
// rnx job list, with rnx's own retries of reads.
func (c *chaosRun) clientLoop(cl *chaosClient, stop chan struct{}, r *rand.Rand) {
	for sleep(stop, 300*time.Millisecond+time.Duration(r.Int64N(int64(900*time.Millisecond)))) {
		verb := []string{"info"}
		if r.IntN(3) == 0 {
			verb = []string{"job", "list"}
		}
		c.call(cl, cl.path, "", verb)
		if cl.name == "maintainer" {
			c.mu.Lock()
			never := c.never
			c.mu.Unlock()
			if never != nil {
				c.call(never, never.path, "", []string{"info"})
			}
		}
	}
}

// directLoop: revoked and retired configs, each node in turn, directly.
func (c *chaosRun) directLoop(stop chan struct{}, r *rand.Rand) {
	i := 0
	for sleep(stop, 500*time.Millisecond+time.Duration(r.Int64N(int64(time.Second)))) {
		c.mu.Lock()
		cls := append(append([]*chaosClient{}, c.revoked...), c.retired...)
		c.mu.Unlock()
		if len(cls) == 0 {
			continue
		}
		cl := cls[r.IntN(len(cls))]
		n := c.nodes[i%len(c.nodes)]
		i++
		c.call(cl, cl.direct[n.addr], n.addr, []string{"info"})
	}
}

func (c *chaosRun) call(cl *chaosClient, path, addr string, verb []string) {
	c.mu.Lock()
	class := cl.class
	c.mu.Unlock()
	cl.mu.Lock()
	start := time.Now()
	res := run(harness.Env(), 60*time.Second, c.rnx, append([]string{"--config", path}, verb...)...)
	end := time.Now()
	cl.mu.Unlock()
	rec := chaosCall{client: cl, class: class, start: start, end: end, ok: res.Code == 0, addr: addr}
	if m := nodeIDLine.FindStringSubmatch(res.Stdout); m != nil {
		rec.node = m[1]
	}
	if !rec.ok {
		rec.errText = lastLine(res.Stderr)
	}
	c.mu.Lock()
	c.calls = append(c.calls, rec)
	c.mu.Unlock()
}

func (c *chaosRun) killAndRestart(r *rand.Rand) {
	victims := []*chaosNode{c.nodes[r.IntN(len(c.nodes))]}
	if r.IntN(6) == 0 { // now and then the whole fleet at once
		victims = c.nodes
		c.count("SIGKILL of every node at once")
	}
	down := time.Duration(500+r.IntN(3500)) * time.Millisecond
	for _, n := range victims {
		n.mu.Lock()
		if n.up {
			n.proc.Cmd.Process.Signal(syscall.SIGKILL)
			n.up = false
			n.down = append(n.down, chaosInterval{from: time.Now(), what: "SIGKILL"})
		}
		n.mu.Unlock()
		// Dead once its port refuses: the kernel closes a killed process's
		// sockets.
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			conn, err := net.DialTimeout("tcp", n.addr, time.Second)
			if err != nil {
				break
			}
			conn.Close()
		}
		c.count("SIGKILL of a node, then restart")
		c.event("SIGKILL %s (restart in %v)", n.id, down)
	}
	time.Sleep(down)
	for _, n := range victims {
		c.restart(n)
	}
}

// restart starts a node's server again and waits until it listens.
func (c *chaosRun) restart(n *chaosNode) {
	n.mu.Lock()
	n.proc = harness.Start(c.t, n.env, c.joblet, "server", "--config", n.config())
	n.up = true
	n.starts = append(n.starts, time.Now())
	n.mu.Unlock()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", n.addr, time.Second); err == nil {
			conn.Close()
			break
		}
	}
	n.mu.Lock()
	if k := len(n.down); k > 0 && n.down[k-1].to.IsZero() {
		n.down[k-1].to = time.Now()
	}
	n.mu.Unlock()
	c.event("%s listening again", n.id)
}

func (c *chaosRun) storeFault(mode string, d time.Duration) {
	c.mu.Lock()
	c.faultMode = mode
	c.store = append(c.store, chaosInterval{from: time.Now(), what: mode})
	c.counts["store fault: "+mode]++
	c.mu.Unlock()
	c.event("store fault %s for %v", mode, d.Round(100*time.Millisecond))
	time.Sleep(d)
	c.mu.Lock()
	c.faultMode = ""
	c.store[len(c.store)-1].to = time.Now()
	c.mu.Unlock()
}

// connFlood holds silent TCP connections against one node, from one
// address or ten, refilled as the node closes them.
func (c *chaosRun) connFlood(r *rand.Rand) {
	n := c.nodes[r.IntN(len(c.nodes))]
	conns := 200 + r.IntN(400)
	sources := harness.FloodSources(1 + 9*r.IntN(2))
	d := 3*time.Second + time.Duration(r.Int64N(int64(5*time.Second)))
	c.count("connection flood (silent TCP connections)")
	c.event("connection flood: %d silent connections from %d addresses on %s for %v", conns, len(sources), n.id, d.Round(100*time.Millisecond))
	iv := chaosInterval{from: time.Now(), what: "connection flood on " + n.id}
	f := harness.StartFlood(n.addr, sources, conns)
	time.Sleep(d)
	f.Stop()
	iv.to = time.Now()
	c.mu.Lock()
	c.floods = append(c.floods, iv)
	c.mu.Unlock()
}

// streamFlood: the reader opens health watches on one node, past its
// role's cap, and holds them.
func (c *chaosRun) streamFlood(r *rand.Rand) {
	n := c.nodes[r.IntN(len(c.nodes))]
	streams := 300 + r.IntN(500)
	d := 3*time.Second + time.Duration(r.Int64N(int64(5*time.Second)))
	c.count("stream flood (health watches of the reader)")
	reader := c.valid[3]
	reader.mu.Lock()
	cfg, err := config.LoadRnx(reader.path)
	reader.mu.Unlock()
	if err != nil {
		return
	}
	_, node, err := cfg.Select("")
	if err != nil {
		return
	}
	nn := *node
	nn.Address = n.addr
	refused := streamFloodOn(&nn, streams, d)
	c.event("stream flood: %d health watches on %s for %v, %d refused", streams, n.id, d.Round(100*time.Millisecond), refused)
}

// operatorStep: the next rotation step, or a role re-issue (with or
// without revoking the old certificate), chosen at random; then the valid
// clients refresh their configs, as the contract asks.
func (c *chaosRun) operatorStep(r *rand.Rand) {
	st, ok := c.rotationPhase()
	if !ok {
		return
	}
	phase := st.Phase
	if st.Interrupted {
		phase = "begun, interrupted"
	}
	roll := r.IntN(20)
	switch {
	case phase == "stable" && roll < 9:
		c.mu.Lock()
		c.never = c.snapshot(c.valid[1], "never-refreshed", "never refreshed")
		c.mu.Unlock()
		if c.step("rotate-ca begin", []string{"certs", "rotate-ca", "begin"}, "begun") {
			c.refreshAll(nil)
		}
	case phase == "stable":
		roles := []string{"admin", "maintainer", "developer", "reader"}
		role := roles[r.IntN(len(roles))]
		revoke := roll < 16
		if revoke { // only roles whose configs the never-refreshed client does not share
			role = []string{"developer", "reader"}[r.IntN(2)]
		}
		args := []string{"certs", "reissue", "--role", role}
		if !revoke {
			if c.step("re-issue of a role (old certificate kept valid)", args, "") {
				c.refreshAll(nil)
			}
			return
		}
		var holder *chaosClient
		for _, v := range c.valid {
			if v.name == role {
				holder = v
			}
		}
		snap := c.snapshot(holder, "revoked-"+role, "revoked")
		cut := time.Now()
		if c.step("re-issue of a role with revocation", append(args, "--revoke"), "") {
			snap.since = time.Now()
			c.mu.Lock()
			c.revoked = append(c.revoked, snap)
			c.revokedSN = append(c.revokedSN, snap.serial)
			c.mu.Unlock()
			c.refreshAll(map[*chaosClient]time.Time{holder: cut})
		}
	case phase == "begun" && r.IntN(3) > 0:
		if c.step("rotate-ca promote", []string{"certs", "rotate-ca", "promote"}, "promoted") {
			c.refreshAll(nil)
		}
	case phase == "begun" || phase == "begun, interrupted":
		// From begun, abort drops the pending CA: a config refreshed into
		// it is refused until it refreshes again.
		cut := time.Now()
		if c.step("rotate-ca abort", []string{"certs", "rotate-ca", "abort"}, "stable") {
			stale := map[*chaosClient]time.Time{}
			for _, v := range c.valid {
				stale[v] = cut
			}
			c.refreshAll(stale)
		}
	case phase == "promoted" && r.IntN(4) > 0:
		c.mu.Lock()
		never := c.never
		if never != nil {
			never.validUntil = time.Now()
		}
		c.mu.Unlock()
		if c.step("rotate-ca finish", []string{"certs", "rotate-ca", "finish"}, "stable") && never != nil {
			c.mu.Lock()
			never.since = time.Now()
			never.class = "retired"
			c.retired = append(c.retired, never)
			c.never = nil
			c.mu.Unlock()
		}
	case phase == "promoted":
		if c.step("rotate-ca abort", []string{"certs", "rotate-ca", "abort"}, "begun") {
			c.refreshAll(nil)
		}
	}
}

// rotationPhase asks rotate-ca status, retrying through store faults.
func (c *chaosRun) rotationPhase() (rotationState, bool) {
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
		r := run(c.opEnv, 2*time.Minute, c.joblet, "certs", "rotate-ca", "status", "--json")
		var st rotationState
		if r.Code == 0 && json.Unmarshal([]byte(r.Stdout), &st) == nil {
			return st, true
		}
	}
	return rotationState{}, false
}

type rotationState struct {
	Phase       string
	Interrupted bool
}

// step runs an operator command until it succeeds, as an operator re-runs
// an idempotent step after a failure; when a failed run did its work
// anyway (its answer was lost), the phase says so.
func (c *chaosRun) step(what string, args []string, wantPhase string) bool {
	c.count(what)
	start := time.Now()
	for attempt := 1; time.Since(start) < 3*time.Minute; attempt++ {
		r := run(c.opEnv, 2*time.Minute, c.joblet, args...)
		if r.Code == 0 {
			c.event("%s: done (attempt %d)", what, attempt)
			return true
		}
		if wantPhase != "" && attempt > 1 {
			if st, ok := c.rotationPhase(); ok && st.Phase == wantPhase && !st.Interrupted {
				c.event("%s: done (attempt %d failed after its work: %s)", what, attempt, lastLine(r.Stderr))
				return true
			}
		}
		time.Sleep(time.Second)
	}
	c.mu.Lock()
	c.opGaveUp = append(c.opGaveUp, fmt.Sprintf("%s: no success in 3 minutes", what))
	c.mu.Unlock()
	return false
}

// refreshAll runs rnx config refresh for every valid client until it
// succeeds; a client in stale (cut off at the given time) is excused from
// then until its refresh is done.
func (c *chaosRun) refreshAll(stale map[*chaosClient]time.Time) {
	for _, v := range c.valid {
		from, cut := stale[v]
		if cut {
			v.mu.Lock()
			v.stale = append(v.stale, chaosInterval{from: from, what: "cut off until refreshed"})
			v.mu.Unlock()
		}
		env := harness.Env(append(append([]string{}, c.storeEnv...), "RNX_CONFIG="+v.path)...)
		for deadline := time.Now().Add(3 * time.Minute); time.Now().Before(deadline); time.Sleep(time.Second) {
			v.mu.Lock()
			r := run(env, 2*time.Minute, c.rnx, "config", "refresh")
			if r.Code == 0 {
				if k := len(v.stale); cut && k > 0 {
					v.stale[k-1].to = time.Now()
				}
				v.mu.Unlock()
				break
			}
			v.mu.Unlock()
		}
		v.mu.Lock()
		if k := len(v.stale); cut && k > 0 && v.stale[k-1].to.IsZero() {
			v.stale[k-1].to = time.Now()
			c.mu.Lock()
			c.opGaveUp = append(c.opGaveUp, "rnx config refresh of "+v.name+": no success in 3 minutes")
			c.mu.Unlock()
		}
		v.mu.Unlock()
	}
	c.count("rnx config refresh of every valid client")
}
