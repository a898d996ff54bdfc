package test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// Three nodes behind HAProxy (round-robin, a new node per connection): 30
// jobs started through the balancer are each found again through it by
// status, log and stop, 30 of 30; `job list --fleet` through it shows all
// 30 with their nodes; a node named in the directory (--nodes) is dialed
// directly; through a flow-hash balancer too. `job log -f` exits as `job run --follow`: 5 for a job that
// exits 5, non-zero with a message when the node dies mid-stream.
func TestJobsReachableThroughBalancer(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	lb := fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t))
	var homes, backends []string
	var procs []*harness.Proc
	for i := 1; i <= 3; i++ {
		home, port, env := smNode(t, moto.URL, "JOBLET_PUBLIC_ADDRESS="+lb, fmt.Sprintf("JOBLET_NODE_ID=node-%d", i))
		harness.MustRun(t, env, joblet, "certs", "bootstrap")
		procs = append(procs, harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml")))
		homes = append(homes, home)
		backends = append(backends, fmt.Sprintf("127.0.0.1:%d", port))
	}
	harness.StartHAProxy(t, lb, backends)
	cfg := filepath.Join(homes[0], "config", "rnx-config.yml")
	env := harness.Env("RNX_CONFIG=" + cfg)
	harness.Eventually(t, 30*time.Second, "fleet serving", func() error {
		for _, b := range backends {
			if r := harness.Run(t, harness.Env(), rnx, "--config", directConfig(t, cfg, lb, b), "info"); r.Code != 0 {
				return errors.New(r.String())
			}
		}
		return nil
	})

	const n = 30
	ids := make([]string, n)
	onNode := map[string]int{}
	for i := range ids {
		r := harness.MustRun(t, env, rnx, "job", "run", "sh", "-c", fmt.Sprintf("echo out-%d; sleep 120", i))
		ids[i] = strings.TrimSpace(r.Stdout)
		node, _, _ := strings.Cut(ids[i], "_")
		if !jobIDShape.MatchString(ids[i]) || !strings.Contains(r.Stderr, "job "+ids[i]+" started on node "+node) {
			t.Fatalf("job run through the balancer: %s", r)
		}
		onNode[node]++
	}
	t.Logf("%d jobs through the balancer, by node: %v", n, onNode)
	if len(onNode) != 3 {
		t.Fatalf("jobs by node %v: want all 3 nodes used", onNode)
	}

	failed := map[string]int{}
	var statusTook time.Duration
	for i, id := range ids {
		node, _, _ := strings.Cut(id, "_")
		start := time.Now()
		r := harness.Run(t, env, rnx, "job", "status", id)
		statusTook += time.Since(start)
		if r.Code != 0 || !strings.Contains(r.Stdout, "RUNNING") || !strings.Contains(r.Stdout, "node:        "+node) {
			failed["status"]++
			t.Logf("status %s: %s", id, r)
		}
		// The job writes at once, but under load maybe not before we ask.
		for deadline := time.Now().Add(20 * time.Second); ; {
			if r = harness.Run(t, env, rnx, "job", "log", id); r.Code != 0 || r.Stdout == fmt.Sprintf("out-%d\n", i) || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if r.Code != 0 || r.Stdout != fmt.Sprintf("out-%d\n", i) {
			failed["log"]++
			t.Logf("log %s: %s", id, r)
		}
	}

	// A figure, not an assertion: what finding the node costs a command.
	var directTook time.Duration
	for _, id := range ids[:9] {
		node, _, _ := strings.Cut(id, "_")
		start := time.Now()
		harness.Run(t, harness.Env(), rnx, "--config", directConfig(t, cfg, lb, backends[node[len(node)-1]-'1']), "job", "status", id)
		directTook += time.Since(start)
	}
	t.Logf("rnx job status: %v on average through the balancer (the node found by new connections), %v directly",
		(statusTook / n).Round(time.Millisecond), (directTook / 9).Round(time.Millisecond))

	listStart := time.Now()
	list := harness.Run(t, env, rnx, "job", "list", "--fleet")
	listTook := time.Since(listStart)
	if list.Code != 0 {
		t.Fatalf("job list --fleet through the balancer: %s", list)
	}
	listed := 0
	for _, id := range ids {
		node, _, _ := strings.Cut(id, "_")
		for _, line := range strings.Split(list.Stdout, "\n") {
			if f := strings.Fields(line); len(f) > 2 && f[0] == node && f[1] == id && f[2] == "RUNNING" {
				listed++
				break
			}
		}
	}
	t.Logf("rnx job list --fleet through the balancer: %v", listTook.Round(time.Millisecond))
	if listed != n || !strings.Contains(list.Stderr, "jobs of 3 node(s): node-1, node-2, node-3") {
		t.Fatalf("job list --fleet shows %d of the %d jobs with their nodes:\n%s", listed, n, list)
	}

	for _, id := range ids {
		if r := harness.Run(t, env, rnx, "job", "stop", id); r.Code != 0 || !strings.Contains(r.Stdout, "STOPPED") {
			failed["stop"]++
			t.Logf("stop %s: %s", id, r)
		}
	}
	t.Logf("through the balancer, failures of %d each: %v", n, failed)
	if len(failed) != 0 {
		t.Fatalf("failures: %v (want none of %d each)", failed, n)
	}

	// Through a flow-hash balancer (the node chosen by a hash of the
	// source port, as an NLB does): each job is found again, and the fleet
	// listed, within the bounded connections.
	nlb := fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t)) // a name the certificates carry
	harness.StartHAProxyBalance(t, nlb, backends, "hash src_port")
	hashed := harness.Env("RNX_CONFIG=" + directConfig(t, cfg, lb, nlb))
	answered := map[string]bool{}
	for i := 0; i < 12; i++ {
		if m := nodeIDLine.FindStringSubmatch(harness.MustRun(t, hashed, rnx, "info").Stdout); m != nil {
			answered[m[1]] = true
		}
	}
	if len(answered) < 2 {
		t.Fatalf("the flow-hash balancer sent 12 connections to %v: not balancing", answered)
	}
	for _, id := range ids[:9] {
		// 40 tries: a miss by chance ((2/3)^40) never fails the test.
		if r := harness.Run(t, hashed, rnx, "--route-attempts", "40", "job", "status", id); r.Code != 0 || !strings.Contains(r.Stdout, "STOPPED") {
			t.Fatalf("status through a flow-hash balancer: %s", r)
		}
	}
	if r := harness.Run(t, hashed, rnx, "job", "list", "--fleet"); r.Code != 0 || strings.Count(r.Stdout, " STOPPED ") != n {
		t.Fatalf("list --fleet through a flow-hash balancer: %s", r)
	}

	// The directory names node-2: it is dialed directly, even with a
	// balancer entry that can no longer reach it.
	direct := directConfig(t, cfg, lb, "127.0.0.1:1") // an entry point where nothing listens
	r := harness.Run(t, harness.Env(), rnx, "--config", direct, "--nodes", "node-2="+backends[1], "job", "status", idOn(t, ids, "node-2"))
	if r.Code != 0 || !strings.Contains(r.Stdout, "STOPPED") {
		t.Fatalf("status through the directory: %s", r)
	}
	// A node nothing reaches: the error says which node and what was tried.
	r = harness.Run(t, harness.Env(), rnx, "--config", direct, "--route-attempts", "2", "job", "status", idOn(t, ids, "node-3"))
	if r.Code != 1 || !strings.Contains(r.Stderr, "runs on node node-3, which no connection reached") || !strings.Contains(r.Stderr, "--nodes node-3=HOST:PORT") {
		t.Fatalf("status of an unreachable node's job: %s", r)
	}

	// log -f exits with the job's code, found through the balancer.
	five := strings.TrimSpace(harness.MustRun(t, env, rnx, "job", "run", "sh", "-c", "echo five; sleep 1; exit 5").Stdout)
	if r := harness.Run(t, env, rnx, "job", "log", "-f", five); r.Code != 5 || r.Stdout != "five\n" || !strings.Contains(r.Stderr, "failed: exit code 5") {
		t.Fatalf("log -f of a job that exits 5: %s", r)
	}

	// log -f of a job whose node dies mid-stream: non-zero, with a message.
	var victim string
	for i := 0; i < 12 && !strings.HasPrefix(victim, "node-3_"); i++ {
		victim = strings.TrimSpace(harness.MustRun(t, env, rnx, "job", "run", "sh", "-c", "echo started; sleep 30").Stdout)
	}
	if !strings.HasPrefix(victim, "node-3_") {
		t.Fatalf("12 jobs through round-robin, none on node-3 (last %s)", victim)
	}
	cmd := exec.Command(rnx, "job", "log", "-f", victim)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	lines := make(chan string, 4)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			lines <- sc.Text()
		}
		io.Copy(io.Discard, out)
	}()
	select {
	case l := <-lines:
		if l != "started" {
			t.Fatalf("log -f printed %q", l)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("log -f printed nothing")
	}
	procs[2].Cmd.Process.Kill() // node-3 dies
	done := make(chan error, 1)
	go func() { wg.Wait(); done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("log -f did not end when its node died")
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 || !strings.Contains(stderr.String(), "the output of job "+victim+" was cut") {
		t.Fatalf("log -f cut by the node's death: %v, stderr %q", err, stderr.String())
	}
	t.Logf("log -f cut by the node's death: exit %d: %s", ee.ExitCode(), strings.TrimSpace(stderr.String()))
}

func idOn(t *testing.T, ids []string, node string) string {
	t.Helper()
	for _, id := range ids {
		if strings.HasPrefix(id, node+"_") {
			return id
		}
	}
	t.Fatalf("no job on %s", node)
	return ""
}
