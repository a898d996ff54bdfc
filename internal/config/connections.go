package config

import (
	"fmt"
	"time"
)

// Connections bounds how long a connection may live and what a connection,
// authenticated or not, may hold. docs/OPERATIONS.md says what each
// protects.
type Connections struct {
	// MaxAge: after it the node asks the client to reconnect (GOAWAY), so
	// every connection handshakes again, against the current trust and CRL.
	MaxAge time.Duration
	// MaxAgeGrace: how long calls still running then may go on; 0 means as
	// long as they run (each is re-checked whenever the node's credentials
	// change, so this is about load, not revocation).
	MaxAgeGrace time.Duration
	// HandshakeTimeout: a connection that has not completed the TLS
	// handshake and HTTP/2 preface by then is closed.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes: past this many connections still handshaking,
	// each new one makes the node close a pending one (the biggest
	// source's oldest stalled one); the newest is never refused.
	MaxPendingHandshakes int
	// MaxIdle: a connection without a call for this long is closed.
	MaxIdle time.Duration
	// KeepaliveTime: after this long without a frame the node pings the
	// client, and closes the connection when no answer comes within
	// KeepaliveTimeout: a client that vanished releases its streams.
	KeepaliveTime time.Duration
	// MaxStreamsPerConn: concurrent calls on one connection (HTTP/2
	// SETTINGS_MAX_CONCURRENT_STREAMS; a gRPC client's next call waits).
	MaxStreamsPerConn int
	// MaxStreamsPerRole: concurrent streaming calls (log follows, health
	// watches, reflection) of one role on this node, over all its
	// connections; past it a new one fails with RESOURCE_EXHAUSTED.
	MaxStreamsPerRole int
	// MaxConnections: authenticated connections held at once, all roles
	// together (0 in the config: DefaultMaxConnections); the node lowers
	// it to what its open-file limit allows (server.ConnLimitFor). Past
	// it each new one makes the node close an idle connection of the role
	// holding the most; the newest is never refused.
	MaxConnections int
}

// Defaults for the connection limits.
const (
	DefaultMaxConnectionAge     = 10 * time.Minute
	DefaultHandshakeTimeout     = 5 * time.Second
	DefaultMaxPendingHandshakes = 128
	DefaultMaxConnectionIdle    = 5 * time.Minute
	DefaultKeepaliveTime        = time.Minute
	KeepaliveTimeout            = 20 * time.Second
	// KeepaliveMinTime is the shortest interval between a client's pings
	// the node tolerates (more often, and it closes the connection).
	KeepaliveMinTime         = 10 * time.Second
	DefaultMaxStreamsPerConn = 256
	DefaultMaxStreamsPerRole = 512
	// DefaultMaxConnections: ~58 KB each, about 240 MB at the cap.
	DefaultMaxConnections = 4096
	maxCount              = 1 << 20 // a sanity bound for the counts
)

// Connections parses the security section's connection limits, with their
// defaults.
func (s *Server) Connections() (Connections, error) {
	c := Connections{MaxAge: DefaultMaxConnectionAge, HandshakeTimeout: DefaultHandshakeTimeout, MaxPendingHandshakes: DefaultMaxPendingHandshakes,
		MaxIdle: DefaultMaxConnectionIdle, KeepaliveTime: DefaultKeepaliveTime,
		MaxStreamsPerConn: DefaultMaxStreamsPerConn, MaxStreamsPerRole: DefaultMaxStreamsPerRole, MaxConnections: DefaultMaxConnections}
	for _, d := range []struct {
		key, v  string
		to      *time.Duration
		zeroOK  bool
		example string
	}{
		{"security.maxConnectionAge", s.Security.MaxConnectionAge, &c.MaxAge, false, "10m"},
		{"security.maxConnectionAgeGrace", s.Security.MaxConnectionAgeGrace, &c.MaxAgeGrace, true, "1h (0: no limit)"},
		{"security.handshakeTimeout", s.Security.HandshakeTimeout, &c.HandshakeTimeout, false, "5s"},
		{"security.maxConnectionIdle", s.Security.MaxConnectionIdle, &c.MaxIdle, false, "5m"},
		{"security.keepaliveTime", s.Security.KeepaliveTime, &c.KeepaliveTime, false, "1m"},
	} {
		if d.v == "" {
			continue
		}
		v, err := time.ParseDuration(d.v)
		if err != nil || v < 0 || v == 0 && !d.zeroOK {
			return Connections{}, fmt.Errorf("%s %q: use a positive duration such as %s", d.key, d.v, d.example)
		}
		*d.to = v
	}
	if c.KeepaliveTime < KeepaliveMinTime {
		return Connections{}, fmt.Errorf("security.keepaliveTime %s: use %s or more", c.KeepaliveTime, KeepaliveMinTime)
	}
	for _, n := range []struct {
		key string
		v   int
		to  *int
		def int
	}{
		{"security.maxPendingHandshakes", s.Security.MaxPendingHandshakes, &c.MaxPendingHandshakes, DefaultMaxPendingHandshakes},
		{"security.maxStreamsPerConnection", s.Security.MaxStreamsPerConn, &c.MaxStreamsPerConn, DefaultMaxStreamsPerConn},
		{"security.maxStreamsPerRole", s.Security.MaxStreamsPerRole, &c.MaxStreamsPerRole, DefaultMaxStreamsPerRole},
		{"security.maxConnections", s.Security.MaxConnections, &c.MaxConnections, DefaultMaxConnections},
	} {
		switch {
		case n.v < 0 || n.v > maxCount:
			return Connections{}, fmt.Errorf("%s %d: use a positive number up to %d (absent: %d)", n.key, n.v, maxCount, n.def)
		case n.v > 0:
			*n.to = n.v
		}
	}
	return c, nil
}
