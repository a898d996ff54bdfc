//go:build bench

package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

const (
	floodConns   = 3000
	floodCalls   = 60
	floodClients = 4
)

// cpuTicks is a process's user+system time in clock ticks (/proc/PID/stat).
func cpuTicks(t *testing.T, pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+2:])
	u, _ := strconv.Atoi(f[11])
	s, _ := strconv.Atoi(f[12])
	return u + s
}

// floodCell is floodCalls rnx info calls, floodClients at a time, against
// cfg while (unless sources is empty) 3,000 silent connections from
// sources are held against target and refilled.
type floodCell struct {
	failed          int
	p50, p99        time.Duration
	closedPerSecond float64
	nodeCPU         float64 // cores
	nodeRSS         int     // KiB, at the end
}

func runFloodCell(t *testing.T, rnx, cfg, target string, sources []string, pid int) floodCell {
	var f *harness.Flood
	if len(sources) > 0 {
		f = harness.StartFlood(target, sources, floodConns)
		f.WaitOpened(t, floodConns)
		defer f.Stop()
	}
	var c floodCell
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := make(chan struct{}, floodCalls)
	for i := 0; i < floodCalls; i++ {
		next <- struct{}{}
	}
	close(next)
	opened0, cpu0, start := int64(0), cpuTicks(t, pid), time.Now()
	if f != nil {
		opened0 = f.Opened.Load()
	}
	for w := 0; w < floodClients; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range next {
				t0 := time.Now()
				r := harness.Run(t, harness.Env(), rnx, "--config", cfg, "info")
				mu.Lock()
				if r.Code != 0 {
					c.failed++
				} else {
					lat = append(lat, time.Since(t0))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start).Seconds()
	c.nodeCPU = float64(cpuTicks(t, pid)-cpu0) / 100 / took // USER_HZ is 100 on Linux
	if f != nil {
		c.closedPerSecond = float64(f.Opened.Load()-opened0) / took
	}
	c.nodeRSS = memKiB(t, pid, "VmRSS")
	slices.Sort(lat)
	if len(lat) > 0 {
		c.p50, c.p99 = lat[len(lat)/2], lat[int(0.99*float64(len(lat)-1))]
	}
	return c
}

// floodSection: rnx info against one node, directly and through HAProxy,
// unloaded and while 3,000 silent connections from 1 and from 50 addresses
// are held against the same address, cells in turn in one run.
func floodSection(t *testing.T, md *strings.Builder) {
	harness.RaiseNoFile(t, 2*floodConns)
	_, rnx := harness.Bins(t)
	n := startNode(t, pki.ECDSAP256)
	node := fmt.Sprintf("127.0.0.1:%d", n.port)
	lb := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	harness.StartHAProxy(t, lb, []string{node})
	b, err := os.ReadFile(n.rnx)
	if err != nil {
		t.Fatal(err)
	}
	viaLB := filepath.Join(t.TempDir(), "via-lb.yml")
	if err := os.WriteFile(viaLB, []byte(strings.ReplaceAll(string(b), node, lb)), 0o600); err != nil {
		t.Fatal(err)
	}
	pid := n.proc.Cmd.Process.Pid
	fmt.Fprintf(md, "## Connection floods\n\n`rnx info` (whole processes, %d calls, %d at a time) against one ECDSA node, directly and through HAProxy (TCP passthrough: every connection reaches the node from HAProxy's address), unloaded and while %d silent TCP connections are held against the same address and reopened as soon as they are closed, from one address (127.0.0.2) or from 50 (127.0.0.2-51); security.maxPendingHandshakes at its default (%d). Attacker, HAProxy, node and clients share the 2 cores. `closed/s` is how many silent connections the node (or HAProxy after it) closed per second, each reopened at once; `node CPU` is the joblet process's, in cores, during the calls; `node RSS` its resident set at the end of the calls.\n\n",
		floodCalls, floodClients, floodConns, 128)
	fmt.Fprintf(md, "| path | flood | failed | p50 | p99 | x unloaded p50 | closed/s | node CPU | node RSS |\n|---|---|---|---|---|---|---|---|---|\n")
	for _, path := range []struct{ name, cfg, target string }{{"direct", n.rnx, node}, {"through HAProxy", viaLB, lb}} {
		var unloaded floodCell
		for _, fl := range []struct {
			name    string
			sources []string
		}{{"none", nil}, {"3,000 from 1 address", harness.FloodSources(1)}, {"3,000 from 50 addresses", harness.FloodSources(50)}} {
			c := runFloodCell(t, rnx, path.cfg, path.target, fl.sources, pid)
			if fl.sources == nil {
				unloaded = c
			}
			fmt.Fprintf(md, "| %s | %s | %d of %d | %s | %s | %.1f | %.0f | %.2f | %s |\n", path.name, fl.name, c.failed, floodCalls,
				ms(c.p50), ms(c.p99), float64(c.p50)/float64(unloaded.p50), c.closedPerSecond, c.nodeCPU, mib(c.nodeRSS))
		}
	}
	md.WriteString("\nUnder a flood a call's connection waits in the kernel's accept queue behind the flood's (the node accepts every connection to judge it), which is most of the added latency (the queue holds the flood's connections past maxPendingHandshakes: a larger cap shortens it, for some memory per pending connection); once accepted, a client's handshake is never the one closed while a silent connection is pending (docs/OPERATIONS.md, \"Which pending connection is closed\").\n\n")
}
