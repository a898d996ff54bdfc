package harness

import (
	"errors"
	"fmt"
	"net"
	"os"
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
	// Opened counts the connections opened (the far end accepted them),
	// refills included; Reset, those of them the far end had already
	// closed when Dial returned; Spoke, those that sent their first bytes.
	Opened, Reset, Spoke atomic.Int64
	stop                 chan struct{}
	wg                   sync.WaitGroup
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
				var c net.Conn
				var err error
				if len(first) > 0 {
					c, err = dialSending(d.LocalAddr.(*net.TCPAddr).IP, addr, first)
				} else {
					c, err = d.Dial("tcp", addr)
				}
				if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
					// Opened, and closed by the far end before this
					// goroutine saw it open: a node that accepts and
					// drops faster than a busy flooder is scheduled.
					f.Opened.Add(1)
					f.Reset.Add(1)
					continue
				}
				if err != nil {
					time.Sleep(20 * time.Millisecond) // out of ports, a full queue: try again
					continue
				}
				f.Opened.Add(1)
				if len(first) > 0 {
					f.Spoke.Add(1) // dialSending wrote them
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

// dialSending opens a connection from the IPv4 address from to addr and
// writes first on it in the same system-call sequence: a blocking connect
// (on loopback it returns once the connection is established), then the
// write, with no scheduling in between. Dialed through Go's poller, a busy
// flooder's goroutine runs again only after the node has accepted the
// connection and, with its cap reached, dropped it: nearly all of such a
// flood is silent, whatever it meant to send.
func dialSending(from net.IP, addr string, first []byte) (net.Conn, error) {
	to, err := net.ResolveTCPAddr("tcp4", addr)
	if err != nil {
		return nil, err
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	local, remote := &syscall.SockaddrInet4{}, &syscall.SockaddrInet4{Port: to.Port}
	copy(local.Addr[:], from.To4())
	copy(remote.Addr[:], to.IP.To4())
	// connect(2) gives up after the send timeout (a full accept queue
	// drops the SYN): the thread it blocks is back within a second.
	err = syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_SNDTIMEO, &syscall.Timeval{Sec: 1})
	if err == nil {
		err = syscall.Bind(fd, local)
	}
	if err == nil {
		err = syscall.Connect(fd, remote)
	}
	if err == nil {
		_, err = syscall.Write(fd, first)
	}
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	file := os.NewFile(uintptr(fd), "flood")
	defer file.Close()
	return net.FileConn(file)
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
