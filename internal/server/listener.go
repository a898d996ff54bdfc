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
//   - one that has sent nothing yet (a real client sends its ClientHello at
//     once), from the source holding the most such connections (an address;
//     an IPv6 /64), its oldest: one attacker's silent sockets go before
//     another's, and before anyone's handshake in progress. Behind a
//     TCP-passthrough balancer every connection has the balancer's address,
//     and this is the oldest silent connection;
//   - when every pending connection has spoken, the oldest of the source
//     holding the most.
//
// A real client's handshake in progress is then closed only when no pending
// connection is silent (a flood that sends a few bytes and stalls) and its
// source holds the most: through a balancer, when the cap's worth of such
// connections arrived after it. The handshake timeout bounds those.
type pendingListener struct {
	net.Listener
	max     int
	dropped prometheus.Counter
	open    *reclaimer // counts open connections

	mu     sync.Mutex
	n      int
	seq    uint64
	source map[netip.Prefix]*source
}

// source is what one source has pending, oldest first, and how many of
// those have not been seen to speak.
type source struct {
	conns  []*pendingConn
	silent int
}

func newPendingListener(l net.Listener, max int, dropped prometheus.Counter, open *reclaimer) *pendingListener {
	return &pendingListener{Listener: l, max: max, dropped: dropped, open: open, source: map[netip.Prefix]*source{}}
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
	src := l.source[c.src]
	if src == nil {
		src = &source{}
		l.source[c.src] = src
	}
	src.conns = append(src.conns, c)
	src.silent++
	l.n++
	l.mu.Unlock()
	if victim != nil {
		l.dropped.Inc()
		// A reset, not a FIN: no TIME_WAIT left on the node per dropped
		// socket (a flood through one balancer would otherwise use up the
		// 4-tuples the balancer needs to reach the node).
		if tc, ok := victim.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		victim.Conn.Close() // its handshake fails and its goroutine returns
	}
	return c, nil
}

// victimLocked picks the connection to close (see pendingListener). A
// connection counts as silent until its handshake reads from it; the one
// picked is checked for bytes waiting in its socket (its goroutine may not
// have run yet), and if it has spoken the pick is made again.
func (l *pendingListener) victimLocked() *pendingConn {
	for {
		var src *source
		for _, s := range l.source {
			if s.silent > 0 && (src == nil || s.silent > src.silent || s.silent == src.silent && s.conns[0].seq < src.conns[0].seq) {
				src = s
			}
		}
		if src == nil {
			break
		}
		var next *pendingConn
		for _, c := range src.conns {
			if !c.spokeLocked() {
				next = c
				break
			}
		}
		if next == nil { // cannot happen: silent counts the unmarked
			break
		}
		if !next.waiting() {
			return next
		}
		next.markSpokeLocked()
	}
	var src *source
	for _, s := range l.source {
		if src == nil || len(s.conns) > len(src.conns) || len(s.conns) == len(src.conns) && s.conns[0].seq < src.conns[0].seq {
			src = s
		}
	}
	return src.conns[0]
}

// removeLocked forgets c (once).
func (l *pendingListener) removeLocked(c *pendingConn) {
	if c.gone {
		return
	}
	c.gone = true
	src := l.source[c.src]
	for i, x := range src.conns {
		if x == c {
			src.conns = append(src.conns[:i:i], src.conns[i+1:]...)
			break
		}
	}
	if !c.spokeLocked() {
		src.silent--
	}
	if len(src.conns) == 0 {
		delete(l.source, c.src)
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
	spoke  bool // guarded by l.mu: counted out of its source's silent ones
	closed sync.Once
	shut   atomic.Bool             // Close was called
	est    atomic.Pointer[estConn] // once its handshake succeeded
}

func (c *pendingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.read.Load() && c.read.CompareAndSwap(false, true) {
		c.l.mu.Lock()
		c.markSpokeLocked()
		c.l.mu.Unlock()
	}
	return n, err
}

func (c *pendingConn) spokeLocked() bool { return c.spoke }

// markSpokeLocked counts c out of its source's silent connections.
func (c *pendingConn) markSpokeLocked() {
	if c.spoke {
		return
	}
	c.spoke = true
	if !c.gone {
		c.l.source[c.src].silent--
	}
}

// waiting reports whether the peer's bytes wait in the socket, unread.
func (c *pendingConn) waiting() bool {
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
	c.shut.Store(true)
	if e := c.est.Load(); e != nil {
		e.l.remove(e)
	}
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
