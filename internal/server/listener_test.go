package server

import (
	"io"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// dialFrom connects to addr from the loopback address from (127.0.0.x).
func dialFrom(t *testing.T, from, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// closedByNode reports whether the node closed c (EOF or reset) within
// wait.
func closedByNode(c net.Conn, wait time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(wait))
	_, err := c.Read(make([]byte, 1))
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		return false
	}
	return err != nil
}

// wholeRecord is a TLS handshake record of 4 bytes: a first record that
// arrived whole.
var wholeRecord = []byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00}

// partialHello is the start of a 512-byte record: the first 11 bytes of a
// ClientHello, its record incomplete.
var partialHello = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03}

// A full set of pending handshakes makes room for each newcomer: the oldest
// stalled connection (silent, or its first record incomplete) of the
// source with the most stalled ones goes; another source's connection, and
// one whose first record arrived whole, are kept while there is a choice.
// Nothing is refused.
func TestPendingListenerDropsOldest(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	dropped := prometheus.NewCounter(prometheus.CounterOpts{Name: "d"})
	l := newPendingListener(raw, 5, dropped, newReclaimer())
	addr := raw.Addr().String()
	// accept takes the next connection the way gRPC's loop would.
	accept := func(c net.Conn) net.Conn {
		t.Helper()
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		return sc
	}
	// Source .3 holds one silent connection, the oldest of all.
	other := dialFrom(t, "127.0.0.3", addr)
	accept(other)
	// Source .2: one silent, one whose first record arrived whole, one
	// that sent part of a ClientHello, one silent.
	a := dialFrom(t, "127.0.0.2", addr)
	accept(a)
	b := dialFrom(t, "127.0.0.2", addr)
	b.Write(wholeRecord)
	accept(b)
	c := dialFrom(t, "127.0.0.2", addr)
	c.Write(partialHello)
	accept(c)
	accept(dialFrom(t, "127.0.0.2", addr))
	if l.pending() != 5 {
		t.Fatalf("pending %d, want 5", l.pending())
	}
	// Full: a newcomer from .4 takes .2's oldest stalled one (a), not .3's.
	accept(dialFrom(t, "127.0.0.4", addr))
	if !closedByNode(a, 2*time.Second) {
		t.Fatal("the biggest source's oldest stalled connection was kept")
	}
	// Next: .2's partial ClientHello (c), though b is older: b's first
	// record arrived whole (it is still waiting in the socket, unread).
	accept(dialFrom(t, "127.0.0.5", addr))
	if !closedByNode(c, 2*time.Second) {
		t.Fatal("a connection with an incomplete first record was kept over one whose record arrived whole")
	}
	for _, kept := range []net.Conn{other, b} {
		if closedByNode(kept, 100*time.Millisecond) {
			t.Fatalf("%s was closed while a bigger source or a stalled connection was there", kept.LocalAddr())
		}
	}
	// Every source now holds one stalled connection: the source whose
	// oldest is oldest (.3) loses it.
	accept(dialFrom(t, "127.0.0.6", addr))
	if !closedByNode(other, 2*time.Second) {
		t.Fatal("the oldest stalled connection was kept when all sources were even")
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(dropped)
	mfs, _ := reg.Gather()
	if got := mfs[0].GetMetric()[0].GetCounter().GetValue(); got != 3 || l.pending() != 5 {
		t.Fatalf("dropped %v, pending %d; want 3 and 5", got, l.pending())
	}
}

// A connection whose handshake ended, or that was closed, no longer counts;
// the same source fills only its own share of victims.
func TestPendingListenerForgetsFinished(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rec := newReclaimer()
	l := newPendingListener(raw, 2, prometheus.NewCounter(prometheus.CounterOpts{Name: "d"}), rec)
	addr := raw.Addr().String()
	dialFrom(t, "127.0.0.2", addr)
	dialFrom(t, "127.0.0.2", addr)
	first, _ := l.Accept()
	second, _ := l.Accept()
	handshakeEnded(first)
	second.Close()
	second.Close() // twice: counted once
	if l.pending() != 0 {
		t.Fatalf("pending %d after a handshake ended and a close, want 0", l.pending())
	}
	if rec.cur != 1 {
		t.Fatalf("open connections %d, want 1 (the one whose handshake ended)", rec.cur)
	}
	first.Close()
}

// When no pending connection is stalled (every first record arrived
// whole), the oldest of the source holding the most goes.
func TestPendingListenerNoneStalled(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	l := newPendingListener(raw, 3, prometheus.NewCounter(prometheus.CounterOpts{Name: "d"}), newReclaimer())
	addr := raw.Addr().String()
	var conns []net.Conn
	for _, from := range []string{"127.0.0.3", "127.0.0.2", "127.0.0.2", "127.0.0.4"} {
		c := dialFrom(t, from, addr)
		c.Write(wholeRecord)
		conns = append(conns, c)
		sc, err := l.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
	}
	if !closedByNode(conns[1], 2*time.Second) {
		t.Fatal("the biggest source's oldest was kept")
	}
	for _, kept := range []net.Conn{conns[0], conns[2], conns[3]} {
		if closedByNode(kept, 100*time.Millisecond) {
			t.Fatalf("%s was closed instead of the biggest source's oldest", kept.LocalAddr())
		}
	}
}

// A connection whose handshake read its first record whole and then made
// no progress for stallAfter counts as stalled: it goes before an older
// source's connection whose record waits unread.
func TestPendingListenerStalledByTime(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	l := newPendingListener(raw, 2, prometheus.NewCounter(prometheus.CounterOpts{Name: "d"}), newReclaimer())
	addr := raw.Addr().String()
	unread := dialFrom(t, "127.0.0.3", addr)
	unread.Write(wholeRecord)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	stalled := dialFrom(t, "127.0.0.2", addr)
	stalled.Write(wholeRecord)
	sc, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	// Read it the way the handshake does, then nothing more.
	if _, err := io.ReadFull(sc, make([]byte, len(wholeRecord))); err != nil {
		t.Fatal(err)
	}
	time.Sleep(stallAfter + 200*time.Millisecond)
	dialFrom(t, "127.0.0.4", addr)
	if _, err := l.Accept(); err != nil {
		t.Fatal(err)
	}
	if !closedByNode(stalled, 2*time.Second) {
		t.Fatal("a connection without progress for stallAfter was kept")
	}
	if closedByNode(unread, 100*time.Millisecond) {
		t.Fatal("an older connection whose first record waits unread was closed instead")
	}
}

// A source is an IPv4 address or an IPv6 /64; an IPv4-mapped IPv6 address
// is its IPv4 address.
func TestSourceOf(t *testing.T) {
	for _, tc := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:1000", "[2001:db8:1:2:ffff::9]:2000"},
		{"[::ffff:10.0.0.1]:1", "10.0.0.1:2"},
	} {
		a, _ := net.ResolveTCPAddr("tcp", tc.a)
		b, _ := net.ResolveTCPAddr("tcp", tc.b)
		if sourceOf(a) != sourceOf(b) {
			t.Errorf("%s and %s are different sources (%v, %v)", tc.a, tc.b, sourceOf(a), sourceOf(b))
		}
	}
	for _, tc := range []struct{ a, b string }{
		{"[2001:db8:1:2::1]:1000", "[2001:db8:1:3::1]:1000"},
		{"10.0.0.1:1", "10.0.0.2:1"},
	} {
		a, _ := net.ResolveTCPAddr("tcp", tc.a)
		b, _ := net.ResolveTCPAddr("tcp", tc.b)
		if sourceOf(a) == sourceOf(b) {
			t.Errorf("%s and %s are one source (%v)", tc.a, tc.b, sourceOf(a))
		}
	}
}
