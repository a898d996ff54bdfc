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
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/stats"

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
// another connection first when the cap is reached.
func (l *connLimit) established(raw net.Conn, info credentials.AuthInfo) {
	pc, ok := raw.(*pendingConn)
	if !ok {
		return // not accepted through pendingListener (cannot be closed here)
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

// connStats is the gRPC stats handler that tells connLimit which
// connections have calls open.
type connStats struct{ l *connLimit }

type estKey struct{}

func (h connStats) TagConn(ctx context.Context, info *stats.ConnTagInfo) context.Context {
	if info.RemoteAddr == nil {
		return ctx
	}
	h.l.mu.Lock()
	e := h.l.byAddr[info.RemoteAddr.String()]
	h.l.mu.Unlock()
	if e == nil {
		return ctx
	}
	return context.WithValue(ctx, estKey{}, e)
}

func (connStats) HandleConn(context.Context, stats.ConnStats) {}

func (connStats) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }

func (h connStats) HandleRPC(ctx context.Context, s stats.RPCStats) {
	e, _ := ctx.Value(estKey{}).(*estConn)
	if e == nil {
		return
	}
	d := 0
	switch s.(type) {
	case *stats.Begin:
		d = 1
	case *stats.End:
		d = -1
	default:
		return
	}
	h.l.mu.Lock()
	e.active += d
	e.last = time.Now()
	h.l.mu.Unlock()
}
