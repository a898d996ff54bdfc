package server

import (
	"cmp"
	"context"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	"github.com/ehsaniara/joblet/internal/pki"
)

// connLimit caps the authenticated connections the node holds, all roles
// together (security.maxConnections). Each costs a file descriptor and
// ~58 KB; without a cap any certificate, a reader's included, could open
// connections until the node has no descriptor left for its own files, its
// config reloads or an admin. Like pendingListener it never refuses the
// newest: past the cap it closes one established connection, chosen so a
// flood pays for itself:
//
//   - from the role holding the most connections (a tie: the newcomer's
//     own role), its connection idle longest (no call or stream open);
//   - a role holding less than its fair share (the cap over the four
//     roles) loses none to another role's newcomer: a reader flood never
//     pushes out an admin;
//   - a connection with a call open goes only when no eligible role has an
//     idle one, the one whose last call began longest ago.
//
// The role is learned at the end of the handshake (countingCreds), the
// activity from gRPC's stats handler (connStats).
type connLimit struct {
	max     int
	held    *prometheus.GaugeVec
	evicted *prometheus.CounterVec

	mu     sync.Mutex
	n      int
	byAddr map[string]*estConn
	byRole map[pki.Role][]*estConn // oldest first
}

// estConn is one authenticated connection.
type estConn struct {
	l    *connLimit
	raw  *pendingConn
	role pki.Role
	// guarded by l.mu
	active int       // calls open
	last   time.Time // of the last call's start or end, or of the handshake
	gone   bool
	// toldCRL is the credentials whose CRL number this connection's
	// client was last told in a response header (crlgate.go).
	toldCRL atomic.Pointer[Credentials]
	// id is who this connection's calls come from, worked out on its
	// first call (connIDOf).
	id atomic.Pointer[connID]
}

// roles are the buckets counted for the fair share.
var roles = []pki.Role{pki.Admin, pki.Maintainer, pki.Developer, pki.Reader}

// noRole labels a certificate without a known role (every call of it is
// denied, but it holds a connection all the same).
const noRole pki.Role = "none"

func newConnLimit(max int, held *prometheus.GaugeVec, evicted *prometheus.CounterVec) *connLimit {
	return &connLimit{max: max, held: held, evicted: evicted, byAddr: map[string]*estConn{}, byRole: map[pki.Role][]*estConn{}}
}

// ConnLimitFor is the number of authenticated connections the node holds
// at most: configured, lowered so that with pending handshakes they use at
// most three quarters of the open-file limit nofile (the rest is for job
// files, config reloads, the store and the metrics listener).
func ConnLimitFor(configured, pending int, nofile uint64) int {
	fit := max(int(min(nofile, 1<<30)*3/4)-pending, 16)
	return min(configured, fit)
}

// openFileLimit is this process's RLIMIT_NOFILE (Go raises the soft limit
// to the hard one at start).
func openFileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 1024
	}
	return r.Cur
}

// established counts raw, whose handshake just succeeded with info, closing
// another connection first when the cap is reached. It returns the
// connection as counted, nil for one it cannot count.
func (l *connLimit) established(raw net.Conn, info credentials.AuthInfo) *estConn {
	pc, ok := raw.(*pendingConn)
	if !ok {
		return nil // not accepted through pendingListener (cannot be closed here)
	}
	role := noRole
	if ti, ok := info.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
		if r, err := pki.RoleOf(ti.State.VerifiedChains[0][0]); err == nil {
			role = r
		}
	}
	e := &estConn{l: l, raw: pc, role: role, last: time.Now()}
	l.mu.Lock()
	var victim *estConn
	if l.n >= l.max {
		victim = l.victimLocked(role)
		l.removeLocked(victim)
	}
	l.byAddr[raw.RemoteAddr().String()] = e
	l.byRole[role] = append(l.byRole[role], e)
	l.n++
	l.mu.Unlock()
	l.held.WithLabelValues(string(role)).Inc()
	pc.est.Store(e)
	if pc.shut.Load() {
		l.remove(e) // closed meanwhile
	}
	if victim != nil {
		l.held.WithLabelValues(string(victim.role)).Dec()
		l.evicted.WithLabelValues(string(victim.role)).Inc()
		if tc, ok := victim.raw.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0) // no TIME_WAIT left per evicted socket
		}
		victim.raw.Close() // its transport ends, and its calls with it
	}
	return e
}

// victimLocked picks the connection to close for a newcomer of role (see
// connLimit); l.n > 0.
func (l *connLimit) victimLocked(role pki.Role) *estConn {
	fair := max(l.max/len(roles), 1)
	var order []pki.Role
	for r, cs := range l.byRole {
		if len(cs) > 0 && (r == role || len(cs) >= fair) {
			order = append(order, r)
		}
	}
	if len(order) == 0 { // cannot happen: the biggest holds at least a fifth
		for r, cs := range l.byRole {
			if len(cs) > 0 {
				order = append(order, r)
			}
		}
	}
	slices.SortFunc(order, func(a, b pki.Role) int {
		if c := cmp.Compare(len(l.byRole[b]), len(l.byRole[a])); c != 0 {
			return c
		}
		switch {
		case a == role:
			return -1
		case b == role:
			return 1
		}
		return cmp.Compare(a, b)
	})
	for _, r := range order {
		var idle *estConn
		for _, c := range l.byRole[r] {
			if c.active == 0 && (idle == nil || c.last.Before(idle.last)) {
				idle = c
			}
		}
		if idle != nil {
			return idle
		}
	}
	var busy *estConn
	for _, c := range l.byRole[order[0]] {
		if busy == nil || c.last.Before(busy.last) {
			busy = c
		}
	}
	return busy
}

// removeLocked forgets c (once); it reports whether it did.
func (l *connLimit) removeLocked(c *estConn) bool {
	if c.gone {
		return false
	}
	c.gone = true
	cs := l.byRole[c.role]
	if i := slices.Index(cs, c); i >= 0 {
		l.byRole[c.role] = slices.Delete(cs, i, i+1)
	}
	if addr := c.raw.RemoteAddr().String(); l.byAddr[addr] == c {
		delete(l.byAddr, addr)
	}
	l.n--
	return true
}

func (l *connLimit) remove(c *estConn) {
	l.mu.Lock()
	did := l.removeLocked(c)
	l.mu.Unlock()
	if did {
		l.held.WithLabelValues(string(c.role)).Dec()
	}
}

// connInfo is the AuthInfo of a connection connLimit counted: its TLS
// state, and the connection, so that a call finds its connection in its
// peer. Not a gRPC stats handler: with one, gRPC builds stats events for
// every call (a copy of the call's metadata, time stamps, payload
// records), which cost the node more per call than its own interceptors.
type connInfo struct {
	credentials.TLSInfo
	est *estConn
}

// tlsInfo is the TLS state of a connection's AuthInfo.
func tlsInfo(ai credentials.AuthInfo) (credentials.TLSInfo, bool) {
	switch v := ai.(type) {
	case *connInfo:
		return v.TLSInfo, true
	case credentials.TLSInfo:
		return v, true
	}
	return credentials.TLSInfo{}, false
}

// estOf is the counted connection a call came on, or nil.
func estOf(ctx context.Context) *estConn {
	if p, ok := peer.FromContext(ctx); ok {
		if ci, ok := p.AuthInfo.(*connInfo); ok {
			return ci.est
		}
	}
	return nil
}

// unary and stream, the first interceptors, tell connLimit which
// connections have calls open: from the call's start to its end.
func (l *connLimit) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	e := estOf(ctx)
	if e == nil {
		return h(ctx, req)
	}
	l.active(e, 1)
	defer l.active(e, -1)
	return h(ctx, req)
}

func (l *connLimit) stream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	e := estOf(ss.Context())
	if e == nil {
		return h(srv, ss)
	}
	l.active(e, 1)
	defer l.active(e, -1)
	return h(srv, ss)
}

func (l *connLimit) active(e *estConn, d int) {
	now := time.Now()
	l.mu.Lock()
	e.active += d
	e.last = now
	l.mu.Unlock()
}
