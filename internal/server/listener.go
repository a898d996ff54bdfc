package server

import (
	"net"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Before its handshake completes a connection is anyone's: it costs the
// node a goroutine, a socket and a timer without proving anything. The
// handshake timeout bounds how long each may last; pendingListener bounds
// how many there are, closing new connections at once while the cap is
// reached, so a flood of idle sockets cannot starve real clients of file
// descriptors or memory.
type pendingListener struct {
	net.Listener
	max     int64
	pending atomic.Int64
	refused prometheus.Counter
}

func newPendingListener(l net.Listener, max int, refused prometheus.Counter) *pendingListener {
	return &pendingListener{Listener: l, max: int64(max), refused: refused}
}

// Accept returns the next connection while fewer than max are handshaking;
// past that it closes the new ones and keeps accepting (an error here would
// stop gRPC's accept loop).
func (l *pendingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.pending.Add(1) > l.max {
			l.pending.Add(-1)
			l.refused.Inc()
			c.Close()
			continue
		}
		return &pendingConn{Conn: c, l: l}, nil
	}
}

// pendingConn counts as pending until its handshake ends (either way) or
// it is closed.
type pendingConn struct {
	net.Conn
	l    *pendingListener
	once sync.Once
}

func (c *pendingConn) handshakeDone() { c.once.Do(func() { c.l.pending.Add(-1) }) }

func (c *pendingConn) Close() error {
	c.handshakeDone()
	return c.Conn.Close()
}

// handshakeEnded is called by the transport credentials when the server
// handshake of raw returns.
func handshakeEnded(raw net.Conn) {
	if c, ok := raw.(*pendingConn); ok {
		c.handshakeDone()
	}
}
