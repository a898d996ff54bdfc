package server

import (
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sys/unix"
)

// Before its handshake completes a connection is anyone's: it costs the
// node a goroutine, a socket and a timer without proving anything. The
// handshake timeout bounds how long each may last; pendingListener bounds
// how many there are. It never refuses the newest caller (a cap that
// refuses newcomers is one a flood fills, and then nobody connects): when
// the cap is reached it closes a pending connection to make room, chosen
// so that a flood pays for itself. Connections are judged by progress, not
// by whether they sent a byte (11 bytes of a ClientHello cost an attacker
// nothing):
//
//   - a stalled one: its first TLS record (the ClientHello) has not arrived
//     whole, counting bytes waiting unread in its socket, or it has made no
//     progress (nothing read or written) for stallAfter. Of these, from the
//     source holding the most (an address; an IPv6 /64), its oldest: one
//     attacker's stalled sockets go before another's, and before anyone's
//     handshake in progress. Behind a TCP-passthrough balancer every
//     connection has the balancer's address, and this is the oldest
//     stalled connection;
//   - when no pending connection is stalled, the oldest of the source
//     holding the most.
//
// A real client sends its ClientHello whole at once and answers within
// milliseconds, so its handshake is closed only when nothing is stalled
// and its source holds the most: through a balancer, when the cap's worth
// of handshakes progressing as fast arrived after it. The handshake
// timeout bounds those.
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

// source is what one source has pending, oldest first.
type source struct {
	conns []*pendingConn
}

// stallAfter is how long a pending connection may go without progress
// before it counts as stalled (a real client's handshake on a network
// takes a few round trips).
const stallAfter = time.Second

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
	c := &pendingConn{Conn: raw, l: l, src: sourceOf(raw.RemoteAddr()), progress: time.Now()}
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
// connection is judged stalled from what its handshake has read; the one
// picked is checked for bytes waiting in its socket (its goroutine may not
// have run yet), and if those are progress the pick is made again.
func (l *pendingListener) victimLocked() *pendingConn {
	now := time.Now()
	for {
		var pick *pendingConn
		most := 0
		for _, s := range l.source {
			var first *pendingConn
			n := 0
			for _, c := range s.conns {
				if c.stalledLocked(now) {
					if first == nil {
						first = c
					}
					n++
				}
			}
			if n > 0 && (n > most || n == most && first.seq < pick.seq) {
				pick, most = first, n
			}
		}
		if pick == nil {
			break
		}
		if pick.stalledWithUnreadLocked() {
			return pick
		}
		pick.unreadProgress = true
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
	l    *pendingListener
	src  netip.Prefix
	seq  uint64
	gone bool // guarded by l.mu
	// guarded by l.mu: what the handshake read of the first TLS record
	// (its header, how many bytes in all), when it last read or wrote, and
	// whether bytes waiting unread were found to be progress since.
	hdr            [tlsHeader]byte
	got            int
	progress       time.Time
	unreadProgress bool
	ended          atomic.Bool // the handshake ended: no more tracking
	closed         sync.Once
	shut           atomic.Bool             // Close was called
	est            atomic.Pointer[estConn] // once its handshake succeeded
}

// tlsHeader is the size of a TLS record header: type, version, length.
const tlsHeader = 5

func (c *pendingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.ended.Load() {
		c.l.mu.Lock()
		if c.got < tlsHeader {
			copy(c.hdr[c.got:], b[:n])
		}
		c.got += n
		c.progress = time.Now()
		c.unreadProgress = false
		c.l.mu.Unlock()
	}
	return n, err
}

func (c *pendingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if n > 0 && !c.ended.Load() {
		c.l.mu.Lock()
		c.progress = time.Now() // the node answered: the peer's turn now
		c.l.mu.Unlock()
	}
	return n, err
}

// firstRecordDone reports whether got bytes starting with hdr hold a
// whole first TLS record.
func firstRecordDone(hdr [tlsHeader]byte, got int) bool {
	return got >= tlsHeader && got >= tlsHeader+int(hdr[3])<<8+int(hdr[4])
}

// stalledLocked judges c from what its handshake read (see
// pendingListener).
func (c *pendingConn) stalledLocked(now time.Time) bool {
	switch {
	case c.unreadProgress:
		return false
	case !firstRecordDone(c.hdr, c.got):
		return true
	}
	return now.Sub(c.progress) > stallAfter
}

// stalledWithUnreadLocked judges c again counting the bytes waiting unread
// in its socket: any after a whole first record are progress; before, they
// are when they complete the first record.
func (c *pendingConn) stalledWithUnreadLocked() bool {
	avail, head := c.unread(tlsHeader - min(c.got, tlsHeader))
	if firstRecordDone(c.hdr, c.got) {
		return avail == 0
	}
	hdr := c.hdr
	if c.got < tlsHeader {
		copy(hdr[c.got:], head)
	}
	return !firstRecordDone(hdr, c.got+avail)
}

// unread reports how many of the peer's bytes wait in the socket, unread,
// and the first (up to n) of them.
func (c *pendingConn) unread(n int) (avail int, head []byte) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return 0, nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, nil
	}
	buf := make([]byte, n)
	// Control, not Read: Read would queue behind the handshake's own
	// blocked read.
	rc.Control(func(fd uintptr) {
		if v, err := unix.IoctlGetInt(int(fd), unix.SIOCINQ); err == nil {
			avail = v
		}
		if n > 0 && avail > 0 {
			if m, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT); err == nil {
				head = buf[:m]
			}
		}
	})
	return avail, head
}

func (c *pendingConn) handshakeDone() {
	c.ended.Store(true)
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
