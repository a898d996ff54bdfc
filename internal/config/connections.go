package config

import (
	"fmt"
	"time"
)

// Connections bounds how long a connection may live and what an
// unauthenticated one may hold.
type Connections struct {
	// MaxAge: after it the node asks the client to reconnect (GOAWAY), so
	// every connection handshakes again, against the current trust and CRL.
	MaxAge time.Duration
	// MaxAgeGrace: how long calls still running then may go on; 0 means as
	// long as they run (each is re-checked whenever the node's credentials
	// change, so this is about load, not revocation).
	MaxAgeGrace time.Duration
	// HandshakeTimeout: a connection that has not completed the TLS
	// handshake by then is closed.
	HandshakeTimeout time.Duration
	// MaxPendingHandshakes: connections past this many that are still
	// handshaking are closed as they arrive.
	MaxPendingHandshakes int
}

// Defaults for the connection limits.
const (
	DefaultMaxConnectionAge     = 10 * time.Minute
	DefaultHandshakeTimeout     = 5 * time.Second
	DefaultMaxPendingHandshakes = 128
)

// Connections parses the security section's connection limits, with their
// defaults.
func (s *Server) Connections() (Connections, error) {
	c := Connections{MaxAge: DefaultMaxConnectionAge, HandshakeTimeout: DefaultHandshakeTimeout, MaxPendingHandshakes: DefaultMaxPendingHandshakes}
	for _, d := range []struct {
		key, v  string
		to      *time.Duration
		zeroOK  bool
		example string
	}{
		{"security.maxConnectionAge", s.Security.MaxConnectionAge, &c.MaxAge, false, "10m"},
		{"security.maxConnectionAgeGrace", s.Security.MaxConnectionAgeGrace, &c.MaxAgeGrace, true, "1h (0: no limit)"},
		{"security.handshakeTimeout", s.Security.HandshakeTimeout, &c.HandshakeTimeout, false, "5s"},
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
	switch n := s.Security.MaxPendingHandshakes; {
	case n < 0:
		return Connections{}, fmt.Errorf("security.maxPendingHandshakes %d must be positive (absent: %d)", n, DefaultMaxPendingHandshakes)
	case n > 0:
		c.MaxPendingHandshakes = n
	}
	return c, nil
}
