package test

import (
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// flood holds n silent TCP connections to addr, from the given loopback
// addresses in turn, and opens a new one whenever the far end closes one.
type flood struct {
	opened, held atomic.Int64
	stop         chan struct{}
	wg           sync.WaitGroup
}

func startFlood(addr string, from []string, n int) *flood {
	f := &flood{stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from[i%len(from)])}, Timeout: 5 * time.Second}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			buf := make([]byte, 1)
			for {
				select {
				case <-f.stop:
					return
				default:
				}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					time.Sleep(20 * time.Millisecond) // out of ports, a full queue: try again
					continue
				}
				f.opened.Add(1)
				f.held.Add(1)
				for { // silent until the far end closes
					c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
					_, err := c.Read(buf)
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						select {
						case <-f.stop:
						default:
							continue
						}
					}
					break
				}
				f.held.Add(-1)
				c.Close()
			}
		}()
	}
	return f
}

func (f *flood) Stop() { close(f.stop); f.wg.Wait() }

// raiseNoFile lifts this process's open-file limit to its hard limit: the
// flood holds thousands of sockets.
func raiseNoFile(t *testing.T, need uint64) {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur < need {
		t.Fatalf("RLIMIT_NOFILE %d (error %v): the flood needs %d", r.Cur, err, need)
	}
}

const (
	floodConns = 3000
	floodCalls = 100
)

// floodSources are the attacker's addresses: 127.0.0.2 onwards.
func floodSources(n int) []string {
	var s []string
	for i := 0; i < n; i++ {
		s = append(s, fmt.Sprintf("127.0.0.%d", 2+i))
	}
	return s
}

// underFlood runs rnx info floodCalls times against cfg (10 at a time)
// while 3,000 silent connections from sources are held against target and
// refilled; it returns the failures and the calls' latencies.
func underFlood(t *testing.T, rnx, cfg, target string, sources []string) (failed []string, lat []time.Duration, reopened int64) {
	raiseNoFile(t, 2*floodConns)
	f := startFlood(target, sources, floodConns)
	defer f.Stop()
	harness.Eventually(t, 30*time.Second, "3,000 silent connections open", func() error {
		if n := f.opened.Load(); n < floodConns {
			return fmt.Errorf("%d opened", n)
		}
		return nil
	})
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
	return failed, lat, f.opened.Load() - floodConns
}

// connFlood: a node and rnx info calls to it, directly or through HAProxy
// in front of it (TCP passthrough: every connection reaches the node from
// HAProxy's address), while 3,000 silent connections from sources are held
// against that address and reopened as they are closed. At least 99% of
// the calls succeed.
func connFlood(t *testing.T, viaHAProxy bool, sources []string) {
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
	failed, lat, reopened := underFlood(t, rnx, cfg, target, sources)
	slices.Sort(lat)
	p := func(q float64) time.Duration {
		if len(lat) == 0 {
			return 0
		}
		return lat[int(q*float64(len(lat)-1))].Round(time.Millisecond)
	}
	t.Logf("%s, 3,000 silent connections from %d addresses (%d reopened after being closed): %d of %d rnx info failed; p50 %s p99 %s",
		how, len(sources), reopened, len(failed), floodCalls, p(0.5), p(0.99))
	if reopened == 0 {
		t.Errorf("no silent connection was ever closed: the flood did not reach the cap")
	}
	if len(failed)*100 > floodCalls {
		t.Errorf("%d of %d rnx info calls failed (at most 1%%), first: %s", len(failed), floodCalls, failed[0])
	}
	reliability.Record(t, "Load", fmt.Sprintf("%d rnx info calls %s while 3,000 silent connections from %d addresses are held and refilled", floodCalls, how, len(sources)),
		fmt.Sprintf("%d failed; p50 %s, p99 %s", len(failed), p(0.5), p(0.99)))
}

func TestConnFloodFromOneAddress(t *testing.T)      { connFlood(t, false, floodSources(1)) }
func TestConnFloodFromFiftyAddresses(t *testing.T)  { connFlood(t, false, floodSources(50)) }
func TestConnFloodThroughHAProxy(t *testing.T)      { connFlood(t, true, floodSources(1)) }
func TestConnFloodFiftyThroughHAProxy(t *testing.T) { connFlood(t, true, floodSources(50)) }
