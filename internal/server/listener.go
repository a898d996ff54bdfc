package server

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/prometheus/client_golang/prometheus"
)

// Before its handshake completes a connection is anyone's: it costs the
// node a goroutine, a socket and a timer without proving anything. The
// handshake timeout bounds how long each may last; pendingListener bounds
// how many there are. It never refuses the newest caller (a cap that
// refuses newcomers is one a flood fills, and then nobody connects): when
// the cap is reached it closes a pending connection to make room, chosen
// so that a flood pays for itself:
//
//   - from the source holding the most pending connections (an address; an
//     IPv6 /64), so one attacker's sockets go before another's single
//     handshake. Behind a TCP-passthrough balancer every connection has the
//     balancer's address and this rule picks it: what remains is the next;
//   - within it, the oldest that has sent nothing yet (a real client sends
//     its ClientHello at once), else the oldest.
//
// A real client's handshake is then lost only if, while it runs, the cap's
// worth of connections arrive from its own source that have all spoken.
type pendingListener struct {
	net.Listener
	max     int
	dropped prometheus.Counter
	open    *reclaimer // counts open connections

	mu     sync.Mutex
	n      int
	seq    uint64
	source map[netip.Prefix][]*pendingConn // oldest first
}

func newPendingListener(l net.Listener, max int, dropped prometheus.Counter, open *reclaimer) *pendingListener {
	return &pendingListener{Listener: l, max: max, dropped: dropped, open: open, source: map[netip.Prefix][]*pendingConn{}}
}

// Accept returns every connection; when max were already pending, one of
// them is closed first (see pendingListener).
func (l *pendingListener) Accept() (net.Conn, error) {
	raw, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	c := &pendingConn{Conn: raw, l: l, src: sourceOf(raw.RemoteAddr())}
	l.open.add(1)
	l.mu.Lock()
	var victim *pendingConn
	if l.n >= l.max {
		victim = l.victimLocked()
		l.removeLocked(victim)
	}
	l.seq++
	c.seq = l.seq
	l.source[c.src] = append(l.source[c.src], c)
	l.n++
	l.mu.Unlock()
	if victim != nil {
		l.dropped.Inc()
		victim.Conn.Close() // its handshake fails and its goroutine returns
	}
	return c, nil
}

// victimLocked picks the connection to close: the biggest source (ties: the
// one whose oldest is oldest), its oldest silent connection, else its oldest.
func (l *pendingListener) victimLocked() *pendingConn {
	var conns []*pendingConn
	for _, cs := range l.source {
		if len(cs) > len(conns) || len(cs) == len(conns) && cs[0].seq < conns[0].seq {
			conns = cs
		}
	}
	for _, c := range conns {
		if !c.spoke() {
			return c
		}
	}
	return conns[0]
}

// removeLocked forgets c (once).
func (l *pendingListener) removeLocked(c *pendingConn) {
	if c.gone {
		return
	}
	c.gone = true
	cs := l.source[c.src]
	for i, x := range cs {
		if x == c {
			cs = append(cs[:i:i], cs[i+1:]...)
			break
		}
	}
	if len(cs) == 0 {
		delete(l.source, c.src)
	} else {
		l.source[c.src] = cs
	}
	l.n--
}

// pending is how many connections are handshaking (for tests).
func (l *pendingListener) pending() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// sourceOf is the unit the fairness rule counts: an IPv4 address, an IPv6
// /64 (what one host or customer is usually given).
func sourceOf(a net.Addr) netip.Prefix {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return netip.Prefix{}
	}
	ip := ta.AddrPort().Addr().Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

// pendingConn counts as pending until its handshake ends (either way) or
// it is closed.
type pendingConn struct {
	net.Conn
	l      *pendingListener
	src    netip.Prefix
	seq    uint64
	gone   bool // guarded by l.mu
	read   atomic.Bool
	closed sync.Once
}

func (c *pendingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		c.read.Store(true)
	}
	return n, err
}

// spoke reports whether the peer has sent anything: read by the handshake
// already, or waiting in the socket (its goroutine may not have run yet).
func (c *pendingConn) spoke() bool {
	if c.read.Load() {
		return true
	}
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	waiting := false
	// Control, not Read: Read would queue behind the handshake's own
	// blocked read.
	rc.Control(func(fd uintptr) {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		waiting = err == nil && n > 0
	})
	return waiting
}

func (c *pendingConn) handshakeDone() {
	c.l.mu.Lock()
	c.l.removeLocked(c)
	c.l.mu.Unlock()
}

func (c *pendingConn) Close() error {
	c.handshakeDone()
	c.closed.Do(func() { c.l.open.add(-1) })
	return c.Conn.Close()
}

// handshakeEnded is called by the transport credentials when the server
// handshake of raw returns.
func handshakeEnded(raw net.Conn) {
	if c, ok := raw.(*pendingConn); ok {
		c.handshakeDone()
	}
}
