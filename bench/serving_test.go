//go:build bench

package bench

import (
	"crypto/tls"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/server"
	"github.com/ehsaniara/joblet/test/harness"
)

var (
	floorOnce             sync.Once
	floorDir              string
	floorErr              error
	floorServer, floorCli string
	peakRSS               string
)

// floorBins builds the floor programs (bench/floorserver, bench/floorclient).
func floorBins(t *testing.T) (server, client string) {
	floorOnce.Do(func() {
		if floorDir, floorErr = os.MkdirTemp("", "joblet-floor-"); floorErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		cmd := exec.Command("go", "build", "-o", floorDir+"/", "./floorserver", "./floorclient", "./peakrss")
		cmd.Dir = filepath.Dir(file)
		if out, err := cmd.CombinedOutput(); err != nil {
			floorErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
		floorServer, floorCli = filepath.Join(floorDir, "floorserver"), filepath.Join(floorDir, "floorclient")
		peakRSS = filepath.Join(floorDir, "peakrss")
	})
	if floorErr != nil {
		t.Fatal(floorErr)
	}
	return floorServer, floorCli
}

// node is one running joblet server and what the bench needs of it.
type node struct {
	home string
	port int
	proc *harness.Proc
	rnx  string // the operator's rnx config
	cfg  *config.Node
}

// startNode bootstraps an embedded node with key type kt and serves it.
func startNode(t *testing.T, kt pki.KeyType) *node {
	joblet, _ := harness.Bins(t)
	n := &node{home: t.TempDir(), port: harness.FreePort(t)}
	env := harness.Env("JOBLET_HOME="+n.home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1", "JOBLET_LISTEN_ADDRESS=127.0.0.1",
		"JOBLET_SERVER_PORT="+strconv.Itoa(n.port), "JOBLET_ADDITIONAL_NAMES=127.0.0.2") // the balancer's address
	timed(t, env, joblet, "certs", "bootstrap", "--key-type", string(kt))
	// Its log (an audit line per call) to a file, as a node's goes to its
	// journal: not through a pipe into this process, whose CPU is counted
	// as the clients'.
	n.proc = harness.StartToFile(t, env, joblet, "server", "--config", filepath.Join(n.home, "config", "joblet-config.yml"))
	n.rnx = filepath.Join(n.home, "config", "rnx-config.yml")
	cfg, err := config.LoadRnx(n.rnx)
	if err != nil {
		t.Fatal(err)
	}
	n.cfg = cfg.Nodes["default"]
	waitTLS(t, n.cfg.Address)
	return n
}

func waitTLS(t *testing.T, addr string) {
	harness.Eventually(t, 10*time.Second, addr+" up", func() error {
		c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
		if err == nil {
			c.Close()
		}
		return err
	})
}

// startFloor runs the floor server in mode (tls or grpc) on the node's own
// certificate, key, CA and CRL, and returns the node entry pointed at it.
func startFloor(t *testing.T, n *node, mode string, extra ...string) (*config.Node, *harness.Proc) {
	srv, _ := floorBins(t)
	sc, err := config.LoadServer(filepath.Join(n.home, "config", "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	files := map[string]string{"cert": sc.Security.ServerCert, "key": sc.Security.ServerKey, "ca": sc.Security.CACert, "crl": sc.Security.CRL}
	var args []string
	for k, v := range files {
		if v == "" {
			continue
		}
		f := filepath.Join(dir, k+".pem")
		if err := os.WriteFile(f, []byte(v), 0o600); err != nil {
			t.Fatal(err)
		}
		args = append(args, "-"+k, f)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	p := harness.Start(t, harness.Env(), srv, append(append([]string{"-mode", mode, "-addr", addr}, args...), extra...)...)
	waitTLS(t, addr)
	c := *n.cfg
	c.Address = addr
	return &c, p
}

// memKiB reads a field (VmHWM, VmRSS) of /proc/PID/status in KiB.
func memKiB(t *testing.T, pid int, field string) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field+":") {
			f := strings.Fields(l)
			v, _ := strconv.Atoi(f[1])
			return v
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

func mib(kib int) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

// memory collects the memory figures the serving and rnx sections measure.
var memory struct {
	idle, idleFloor, busy, busyFloor int // VmHWM, KiB
	rnx                              map[string]int
}

// servingSection measures handshakes, calls and calls through HAProxy;
// callsOnly (BENCH_ONLY=calls, for working on the call path) measures only
// the calls against their floor.
func servingSection(t *testing.T, md *strings.Builder, callsOnly bool) {
	if callsOnly {
		callsTable(t, md, startNode(t, pki.ECDSAP256))
		return
	}
	fmt.Fprintf(md, "## Serving\n\nOne `joblet server` process; clients in the benchmark process on the same 2 cores. Every joblet figure is measured in the same run, on the same certificates, as its floor: a bare `crypto/tls` mutual-TLS server for handshakes, a bare gRPC server (the same TLS, a `GetNodeInfo` answering a prepared `NodeInfo` of the size joblet's is, no interceptors) for calls; both are `bench/floorserver`. `x floor` is joblet's figure over the floor's (goal: at least 0.90 for calls with the CRL number, issue 25).\n\n")
	fmt.Fprintf(md, "A handshake here is one new connection: the mTLS handshake, the HTTP/2 preface and the server's first frame; resumed ones use a TLS 1.3 session ticket. The bare TLS server, joblet and the bare gRPC server take turns, 1.5 s each, twice; `x TLS` and `x gRPC` are joblet's rate over each floor's (the bare gRPC server sets up an HTTP/2 transport per connection, as joblet does).\n\n")
	fmt.Fprintf(md, "| server key | full: bare TLS/s | bare gRPC/s | joblet/s | x TLS | x gRPC | resumed: bare TLS/s | bare gRPC/s | joblet/s | x TLS | x gRPC |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	var ecdsa *node
	for _, kt := range []pki.KeyType{pki.ECDSAP256, pki.RSA2048} {
		n := startNode(t, kt)
		if kt == pki.ECDSAP256 {
			ecdsa = n
			memory.idle = memKiB(t, n.proc.Cmd.Process.Pid, "VmHWM")
		}
		floor, fp := startFloor(t, n, "tls")
		floorGRPC, gp := startFloor(t, n, "grpc")
		var res [3][2]float64 // [TLS floor, joblet, gRPC floor][full, resumed]
		note := ""
		for round := 0; round < 2; round++ {
			for i, target := range []*config.Node{floor, n.cfg, floorGRPC} {
				for j, resume := range []bool{false, true} {
					r, did := handshakes(t, target, resume, 1500*time.Millisecond)
					res[i][j] += r / 2
					if resume && !did {
						note = " (no resumption)"
					}
				}
			}
		}
		fp.Cmd.Process.Signal(os.Interrupt)
		gp.Cmd.Process.Signal(os.Interrupt)
		fmt.Fprintf(md, "| %s | %.0f | %.0f | %.0f | %.2f | %.2f | %.0f | %.0f | %.0f%s | %.2f | %.2f |\n", kt,
			res[0][0], res[2][0], res[1][0], res[1][0]/res[0][0], res[1][0]/res[2][0],
			res[0][1], res[2][1], res[1][1], note, res[1][1]/res[0][1], res[1][1]/res[2][1])
	}

	callsTable(t, md, ecdsa)

	lb := fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t))
	harness.StartHAProxy(t, lb, []string{fmt.Sprintf("127.0.0.1:%d", ecdsa.port)})
	viaLB := *ecdsa.cfg
	viaLB.Address = lb
	fmt.Fprintf(md, "\nThe same calls to joblet through HAProxy (TCP passthrough), 3 s per cell.\n\n| clients | p50 | p99 | calls/s |\n|---|---|---|---|\n")
	for _, conc := range []int{1, 16, 64} {
		l := load(t, &viaLB, conc, 3*time.Second)
		fmt.Fprintf(md, "| %d | %s | %s | %.0f |\n", conc, ms(l.p50), ms(l.p99), l.rps)
	}
	md.WriteString("\nCalls per second at 64 clients is the saturation figure: both cores are busy (server, clients and, through the balancer, HAProxy).\n\n")
}

// callsTable measures calls against the bare gRPC server, interleaved.
func callsTable(t *testing.T, md *strings.Builder, ecdsa *node) {
	floor, fp := startFloor(t, ecdsa, "grpc")
	workers := strconv.Itoa(int(server.StreamWorkers()))
	floorW, wp := startFloor(t, ecdsa, "grpc", "-workers", workers)
	memory.idleFloor = memKiB(t, fp.Cmd.Process.Pid, "VmHWM")
	fmt.Fprintf(md, "\nCalls: `GetNodeInfo` (what `rnx info` asks) over one mTLS connection per client, ECDSA server: %d rounds of 1 s each of the floor, joblet, joblet with the CRL number and the floor with stream workers, in a rotating order (new connections each time, their handshakes included). Rates are the mean over the rounds, p50 and p99 the worst round's; `x floor` is the median of the ratios taken round by round (min–max in brackets).\n\n", callRounds)
	fmt.Fprintf(md, "`joblet, with the CRL number` is joblet called as rnx calls it, every call carrying the number of the CRL the client holds (the CRL gate: a node with a newer CRL hands it over before running the call; here the client holds the node's own, so every call runs). It is the figure of issue 25's goal (at least 0.90 of the bare gRPC server).\n\n")
	fmt.Fprintf(md, "joblet serves calls on %s kept goroutines (`grpc.NumStreamWorkers`: a goroutine per call grows its stack on every call), where the bare gRPC server takes gRPC's default, a new goroutine per call. The last column is the same bare server with as many stream workers: joblet's rate over it is what joblet's own work costs (interceptors, audit line, the gate) on equal footing.\n\n", workers)
	fmt.Fprintf(md, "| clients | bare gRPC calls/s | p50 | p99 | joblet calls/s | p50 | p99 | x floor | joblet, with the CRL number, calls/s | x floor | bare gRPC with stream workers, calls/s | joblet with the number x it |\n|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	var cpuRows, srvRows []string
	const targets = 4 // the floor, joblet, joblet with the CRL number, the floor with workers
	for _, conc := range []int{1, 16, 64} {
		// Rounds of 1 s each for every target, in a rotating order; the
		// ratio is taken round by round (each against the floor of its
		// own round) and its median quoted, so a drift of the shared
		// machine's speed weighs on both sides of every ratio alike.
		var got [targets][]latency
		var cpu, srv [targets][]float64 // ns per call: server and clients together; the server's alone
		var jr, rr, wr, jc, rc []float64
		for round := 0; round < callRounds; round++ {
			var l [targets]latency
			var c, sv [targets]float64
			for k := 0; k < targets; k++ {
				i := (k + round) % targets
				pid := ecdsa.proc.Cmd.Process.Pid
				switch i {
				case 0:
					pid = fp.Cmd.Process.Pid
				case 3:
					pid = wp.Cmd.Process.Pid
				}
				srvBefore := cpuNS(t, pid)
				before := srvBefore + selfCPU()
				switch i {
				case 0:
					l[i] = load(t, floor, conc, time.Second)
				case 1:
					l[i] = load(t, ecdsa.cfg, conc, time.Second)
				case 2:
					l[i] = loadWith(t, ecdsa.cfg, conc, time.Second, true)
				case 3:
					l[i] = load(t, floorW, conc, time.Second)
				}
				srvAfter := cpuNS(t, pid)
				c[i] = float64(srvAfter+selfCPU()-before) / float64(max(l[i].n, 1))
				sv[i] = float64(srvAfter-srvBefore) / float64(max(l[i].n, 1))
			}
			for i := range targets {
				got[i], cpu[i], srv[i] = append(got[i], l[i]), append(cpu[i], c[i]), append(srv[i], sv[i])
			}
			jr, rr, wr = append(jr, l[1].rps/l[0].rps), append(rr, l[2].rps/l[0].rps), append(wr, l[2].rps/l[3].rps)
			jc, rc = append(jc, c[0]/c[1]), append(rc, c[0]/c[2])
		}
		fl, jl, rl, wl := merge(got[0]), merge(got[1]), merge(got[2]), merge(got[3])
		fmt.Fprintf(md, "| %d | %.0f | %s | %s | %.0f | %s | %s | %.2f (%.2f–%.2f) | %.0f | %.2f (%.2f–%.2f) | %.0f | %.2f (%.2f–%.2f) |\n", conc, fl.rps, ms(fl.p50), ms(fl.p99), jl.rps, ms(jl.p50), ms(jl.p99),
			median(jr), slices.Min(jr), slices.Max(jr), rl.rps, median(rr), slices.Min(rr), slices.Max(rr), wl.rps, median(wr), slices.Min(wr), slices.Max(wr))
		cpuRows = append(cpuRows, fmt.Sprintf("| %d | %.0f µs | %.0f µs | %.2f (%.2f–%.2f) | %.0f µs | %.2f (%.2f–%.2f) |\n", conc, median(cpu[0])/1000, median(cpu[1])/1000,
			median(jc), slices.Min(jc), slices.Max(jc), median(cpu[2])/1000, median(rc), slices.Min(rc), slices.Max(rc)))
		srvRows = append(srvRows, fmt.Sprintf("| %d | %.1f µs | %.1f µs | %.1f µs | %.1f µs |\n", conc, median(srv[0])/1000, median(srv[3])/1000, median(srv[1])/1000, median(srv[2])/1000))
	}
	fmt.Fprintf(md, "\nThe same rounds by CPU: the CPU time a call costs the server and its clients together (the server's threads from /proc, the clients' from this process's rusage), per call; `x floor` is the floor's CPU per call over joblet's, median of the rounds (min–max). At saturation on a machine of its own this is the throughput ratio; unlike calls per second it does not move with what else the shared machine runs.\n\n")
	fmt.Fprintf(md, "| clients | bare gRPC CPU/call | joblet CPU/call | x floor | joblet, with the CRL number, CPU/call | x floor |\n|---|---|---|---|---|---|\n")
	for _, row := range cpuRows {
		md.WriteString(row)
	}
	fmt.Fprintf(md, "\nThe server's CPU alone per call (its threads from /proc), median of the rounds.\n\n")
	fmt.Fprintf(md, "| clients | bare gRPC | bare gRPC with stream workers | joblet | joblet, with the CRL number |\n|---|---|---|---|---|\n")
	for _, row := range srvRows {
		md.WriteString(row)
	}
	memory.busy = memKiB(t, ecdsa.proc.Cmd.Process.Pid, "VmHWM")
	memory.busyFloor = memKiB(t, fp.Cmd.Process.Pid, "VmHWM")
	fp.Cmd.Process.Signal(os.Interrupt)
	wp.Cmd.Process.Signal(os.Interrupt)
}

const callRounds = 5

// cpuNS is the CPU time process pid has used, in ns: the sum over its
// threads (schedstat: nanoseconds, where /proc/PID/stat counts ticks).
func cpuNS(t *testing.T, pid int) int64 {
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("no threads of %d in /proc: %v", pid, err)
	}
	var sum int64
	for _, f := range tasks {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // a thread that just ended
		}
		if v, err := strconv.ParseInt(strings.Fields(string(b))[0], 10, 64); err == nil {
			sum += v
		}
	}
	return sum
}

// selfCPU is this process's CPU time (the clients'), in ns.
func selfCPU() int64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return ru.Utime.Nano() + ru.Stime.Nano()
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// merge averages the rates of equal-length runs and takes the worse
// percentiles.
func merge(ls []latency) latency {
	var m latency
	for _, l := range ls {
		m.rps += l.rps / float64(len(ls))
		m.p50 = max(m.p50, l.p50)
		m.p99 = max(m.p99, l.p99)
	}
	return m
}

// proc is one finished process: wall and CPU time.
type proc struct{ wall, cpu time.Duration }

func runProc(t *testing.T, bin string, args ...string) proc {
	cmd := exec.Command(bin, args...)
	cmd.Env = harness.Env()
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", bin, args, err, out)
	}
	return proc{time.Since(start), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
}

// peakOf is the largest peak RSS (KiB) of runs of a command, each started
// through bench/peakrss (see there why not from this process).
func peakOf(t *testing.T, runs int, args ...string) int {
	peak := 0
	for i := 0; i < runs; i++ {
		cmd := exec.Command(peakRSS, args...)
		cmd.Env = harness.Env()
		var errb strings.Builder
		cmd.Stderr = &errb
		if err := cmd.Run(); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, errb.String())
		}
		lines := strings.Split(strings.TrimSpace(errb.String()), "\n")
		v, err := strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], "peakrss "))
		if err != nil {
			t.Fatalf("peakrss said %q", errb.String())
		}
		peak = max(peak, v)
	}
	return peak
}

const rnxRuns = 40

// rnxSection times whole rnx processes against the floor client doing the
// same steps, interleaved run by run against one node.
func rnxSection(t *testing.T, md *strings.Builder) {
	_, rnx := harness.Bins(t)
	_, cli := floorBins(t)
	n := startNode(t, pki.ECDSAP256)
	// A job, so `job list` has one to list.
	harness.MustRun(t, harness.Env(), rnx, "--config", n.rnx, "job", "run", "true")
	type row struct {
		name string
		args []string
	}
	rows := []row{
		{"floor: read the config, handshake, GetNodeInfo (`bench/floorclient`)", []string{cli, n.rnx, "default"}},
		{"`rnx info`", []string{rnx, "--config", n.rnx, "info"}},
		{"`rnx job list`", []string{rnx, "--config", n.rnx, "job", "list"}},
		{"`rnx version` (start-up only, no config)", []string{rnx, "version"}},
	}
	got := make([][]proc, len(rows))
	for _, r := range rows { // warm-up
		runProc(t, r.args[0], r.args[1:]...)
	}
	for i := 0; i < rnxRuns; i++ {
		for k, r := range rows {
			got[k] = append(got[k], runProc(t, r.args[0], r.args[1:]...))
		}
	}
	med := func(ps []proc) (w, w95, c time.Duration) {
		var ws, cs []time.Duration
		for _, p := range ps {
			ws, cs = append(ws, p.wall), append(cs, p.cpu)
		}
		return pct(ws, 0.5), pct(ws, 0.95), pct(cs, 0.5)
	}
	fw, _, fc := med(got[0])
	fmt.Fprintf(md, "## One rnx command against its floor\n\n%d runs of each, interleaved, against one ECDSA node (operator config with every role's entry); every run is a whole process. The floor is a minimal Go client doing the same steps (`bench/floorclient`: read the YAML config, take one node, mutual TLS, one `GetNodeInfo`). `x floor` is the median over the floor's.\n\n", rnxRuns)
	fmt.Fprintf(md, "| command | wall median | p95 | x floor | CPU median | x floor | peak RSS (of 5 more runs) |\n|---|---|---|---|---|---|---|\n")
	memory.rnx = map[string]int{}
	for k, r := range rows {
		w, w95, c := med(got[k])
		rss := peakOf(t, 5, r.args...)
		fmt.Fprintf(md, "| %s | %s | %s | %.2f | %s | %.2f | %s |\n", r.name, ms(w), ms(w95), float64(w)/float64(fw), ms(c), float64(c)/float64(fc), mib(rss))
		memory.rnx[r.name] = rss
	}
	md.WriteString("\n")
}

// memorySection reports what the serving and rnx sections measured.
func memorySection(t *testing.T, md *strings.Builder) {
	md.WriteString("## Memory\n\nPeak resident set size: a server's VmHWM from /proc, a command's rusage maxrss (started through `bench/peakrss`, since a child that Go starts shares its parent's memory until its exec and would count the benchmark's own).\n\n| process | peak RSS |\n|---|---|\n")
	if memory.idle > 0 {
		fmt.Fprintf(md, "| joblet server, idle (started, before any client) | %s |\n", mib(memory.idle))
		fmt.Fprintf(md, "| joblet server, after serving 64 clients (peak over the serving section) | %s |\n", mib(memory.busy))
		fmt.Fprintf(md, "| floor gRPC server, idle | %s |\n", mib(memory.idleFloor))
		fmt.Fprintf(md, "| floor gRPC server, after serving 64 clients | %s |\n", mib(memory.busyFloor))
	}
	for _, k := range []string{"`rnx info`", "`rnx job list`", "floor: read the config, handshake, GetNodeInfo (`bench/floorclient`)"} {
		if v, ok := memory.rnx[k]; ok {
			fmt.Fprintf(md, "| %s | %s |\n", k, mib(v))
		}
	}
	md.WriteString("\n")
}
