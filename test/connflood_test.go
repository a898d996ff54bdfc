package test

import (
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

const (
	floodConns = 3000
	floodCalls = 100
)

// underFlood runs rnx info floodCalls times against cfg (10 at a time)
// while 3,000 silent connections from sources are held against target and
// refilled; it returns the failures and the calls' latencies.
func underFlood(t *testing.T, rnx, cfg, target string, sources []string, first []byte) (failed []string, lat []time.Duration, f *harness.Flood) {
	f = harness.StartFloodSending(target, sources, floodConns, first)
	defer f.Stop()
	f.WaitOpened(t, floodConns)
	var mu sync.Mutex
	var wg sync.WaitGroup
	next := atomic.Int64{}
	for w := 0; w < 10; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= floodCalls {
				start := time.Now()
				r := harness.Run(t, harness.Env(), rnx, "--config", cfg, "info")
				mu.Lock()
				if r.Code != 0 {
					failed = append(failed, r.String())
				} else {
					lat = append(lat, time.Since(start))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return failed, lat, f
}

// connFlood: a node and rnx info calls to it, directly or through HAProxy
// in front of it (TCP passthrough: every connection reaches the node from
// HAProxy's address), while 3,000 silent connections from sources are held
// against that address and reopened as they are closed. At least 99% of
// the calls succeed.
func connFlood(t *testing.T, viaHAProxy bool, sources []string) {
	connFloodSending(t, viaHAProxy, sources, nil)
}

// connFloodSending is connFlood whose connections each send first, then
// stall.
func connFloodSending(t *testing.T, viaHAProxy bool, sources []string, first []byte) {
	harness.RaiseNoFile(t, 2*floodConns) // before the node and HAProxy start: they inherit it
	_, rnx := harness.Bins(t)
	home, _ := embeddedNode(t)
	cfg := filepath.Join(home, "config", "rnx-config.yml")
	node := fmt.Sprintf("127.0.0.1:%d", serverConfig(t, home).Server.Port)
	how, target := "directly", node
	if viaHAProxy {
		lb := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
		harness.StartHAProxy(t, lb, []string{node})
		how, target, cfg = "through HAProxy", lb, directConfig(t, cfg, node, lb)
	}
	start := time.Now()
	failed, lat, f := underFlood(t, rnx, cfg, target, sources, first)
	took := time.Since(start)
	reopened := f.Opened.Load() - floodConns
	kind := "silent"
	if len(first) > 0 {
		kind = fmt.Sprintf("stalled (%d bytes sent)", len(first))
	}
	slices.Sort(lat)
	p := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(q*float64(len(lat)-1))].Round(time.Millisecond)
	}
	t.Logf("%s, 3,000 %s connections from %d addresses (%d reopened after being closed, %.0f/s; %d closed before the flooder saw them open; %d sent their bytes): %d of %d rnx info failed; p50 %s p99 %s",
		how, kind, len(sources), reopened, float64(f.Opened.Load())/took.Seconds(), f.Reset.Load(), f.Spoke.Load(), len(failed), floodCalls, p(0.5), p(0.99))
	if reopened == 0 {
		t.Errorf("no flood connection was ever closed: the flood did not reach the cap")
	}
	if len(first) > 0 && f.Spoke.Load() < floodConns {
		t.Errorf("only %d flood connections sent their %d bytes: the flood was mostly silent", f.Spoke.Load(), len(first))
	}
	if len(failed)*100 > floodCalls {
		t.Errorf("%d of %d rnx info calls failed (at most 1%%), first: %s", len(failed), floodCalls, failed[0])
	}
	reliability.Record(t, "Load", fmt.Sprintf("%d rnx info calls %s while 3,000 %s connections from %d addresses are held and refilled", floodCalls, how, kind, len(sources)),
		fmt.Sprintf("%d failed; p50 %s, p99 %s", len(failed), p(0.5), p(0.99)))
}

// Directly, the node accepts and drops the flood's connections about as
// fast as the flooder (race-instrumented, 3,000 goroutines on two cores)
// opens them: 2,200 to 3,900 a second here, most closed before the
// flooder's goroutine returns from Dial. Those count as opened and
// refilled (harness.Flood.Reset); they were the connections a count of
// Dial's successes missed (386 to 830 in the 30 s warm-up).
func TestConnFloodFromOneAddress(t *testing.T)      { connFlood(t, false, harness.FloodSources(1)) }
func TestConnFloodFromFiftyAddresses(t *testing.T)  { connFlood(t, false, harness.FloodSources(50)) }
func TestConnFloodThroughHAProxy(t *testing.T)      { connFlood(t, true, harness.FloodSources(1)) }
func TestConnFloodFiftyThroughHAProxy(t *testing.T) { connFlood(t, true, harness.FloodSources(50)) }

// A flood that sends the first 11 bytes of a ClientHello and stalls, from
// 200 addresses: its connections have spoken but their first TLS record
// is incomplete, so they go before any real client's handshake.
func TestConnFloodPartialClientHello(t *testing.T) {
	connFloodSending(t, false, harness.FloodSources(200), harness.PartialClientHello)
}
