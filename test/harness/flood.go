package harness

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// Flood holds silent (or stalled) TCP connections to an address and opens a new one
// whenever the far end closes one (what an attacker without a certificate
// can do to any node it reaches).
type Flood struct {
	// Opened counts the connections opened, refills included.
	Opened atomic.Int64
	stop   chan struct{}
	wg     sync.WaitGroup
}

// StartFlood holds n silent connections to addr from the loopback
// addresses from, in turn, until Stop.
func StartFlood(addr string, from []string, n int) *Flood {
	return StartFloodSending(addr, from, n, nil)
}

// PartialClientHello is the start of a TLS record (handshake, 512 bytes
// long) and of a ClientHello in it: 11 of its 517 bytes.
var PartialClientHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

// StartFloodSending is StartFlood whose connections each send first, then
// stall.
func StartFloodSending(addr string, from []string, n int, first []byte) *Flood {
	f := &Flood{stop: make(chan struct{})}
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
				f.Opened.Add(1)
				if len(first) > 0 {
					c.Write(first)
				}
				for { // silent until the far end closes, or Stop
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
				c.Close()
			}
		}()
	}
	return f
}

// Stop closes the flood's connections.
func (f *Flood) Stop() { close(f.stop); f.wg.Wait() }

// WaitOpened waits until n connections were opened.
func (f *Flood) WaitOpened(t testing.TB, n int64) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("%d silent connections open", n), func() error {
		if got := f.Opened.Load(); got < n {
			return fmt.Errorf("%d opened", got)
		}
		return nil
	})
}

// FloodSources are n attacker addresses: 127.0.0.2 onwards.
func FloodSources(n int) []string {
	var s []string
	for i := 0; i < n; i++ {
		s = append(s, fmt.Sprintf("127.0.0.%d", 2+i))
	}
	return s
}

// RaiseNoFile lifts this process's open-file limit to its hard limit and
// fails unless that gives need.
func RaiseNoFile(t testing.TB, need uint64) {
	t.Helper()
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil || r.Cur < need {
		t.Fatalf("RLIMIT_NOFILE %d (error %v): the flood needs %d", r.Cur, err, need)
	}
}
