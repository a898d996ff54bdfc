// Package route finds the node that runs a job, from the job's ID alone,
// through a load balancer or directly, and finds every node of a fleet for
// a fleet-wide listing.
//
// Nothing here gives a node new powers: the client does all the finding.
// Each try is a new TCP connection (a new source port, so a flow-hash
// balancer such as an NLB hashes it anew; a round-robin one such as HAProxy
// takes the next node) whose node says who it is (GetNodeInfo, over the
// mutual TLS that proved it a node of the fleet); the one that names the
// job's node is kept, pinned to that one TCP connection
// (client.DialPinned), and the others are closed. Where the node directory
// (internal/nodedir) names the node, it is dialed directly. Only the
// selected entry is searched through, with at most Attempts connections;
// every other address of the directory is asked once.
package route

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/jobid"
	"github.com/ehsaniara/joblet/internal/nodedir"
)

// DefaultAttempts bounds the connections a search makes through one entry
// point. Through round-robin a fleet of N nodes needs at most N; through a
// flow hash each try reaches the node with chance 1/N, so 24 tries find it
// with 99.99% for N=3 and 92% for N=10: larger fleets name their nodes in
// the directory, which costs one connection whatever the size.
const DefaultAttempts = 24

// DefaultAttemptTimeout bounds one try (connect, handshake, GetNodeInfo).
const DefaultAttemptTimeout = 10 * time.Second

// Router reaches nodes with the credentials of one rnx config entry.
type Router struct {
	// Cfg and Entry: the config and the entry the command selected;
	// every connection uses its credentials (the role the user chose),
	// only the address changes.
	Cfg   *config.Rnx
	Entry string
	// Dir is the node directory; its first node is normally Entry's.
	Dir nodedir.Directory
	// Attempts bounds the connections through one entry point
	// (DefaultAttempts when 0); AttemptTimeout one try.
	Attempts       int
	AttemptTimeout time.Duration
	// Learn is the CRL learning of each connection (nil: none); it gets
	// where the connection will be once dialed.
	Learn func(conn **client.Conn, entry string) client.Learn
}

// Node is a connection to one node, known by its id.
type Node struct {
	Conn *client.Conn
	ID   string
	Info *pb.NodeInfo
	// Via is the directory address it was reached through.
	Via string
}

func (r *Router) attempts() int {
	if r.Attempts > 0 {
		return r.Attempts
	}
	return DefaultAttempts
}

// dial opens a pinned connection to address and asks who answers.
func (r *Router) dial(ctx context.Context, address string) (*Node, error) {
	base := r.Cfg.Nodes[r.Entry]
	if base == nil {
		return nil, fmt.Errorf("node %q is not in the config", r.Entry)
	}
	n := *base
	n.Address = address
	var conn *client.Conn
	var learn client.Learn
	if r.Learn != nil {
		inner := r.Learn(&conn, r.Entry)
		learn = func(crl []byte, chains [][]*x509.Certificate) error {
			err := inner(crl, chains)
			n.CRL = r.Cfg.Nodes[r.Entry].CRL // the copy carries what the entry learned
			return err
		}
	}
	name := r.Entry
	if address != base.Address {
		name = address
	}
	conn, err := client.DialPinned(name, &n, learn)
	if err != nil {
		return nil, err
	}
	timeout := r.AttemptTimeout
	if timeout == 0 {
		timeout = DefaultAttemptTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	info, _, err := conn.Hello(actx)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return &Node{Conn: conn, ID: info.NodeId, Info: info, Via: address}, nil
}

// tally counts who answered the tries through one address, for the error
// that says why a node was not found.
type tally struct {
	address string
	tries   int
	by      map[string]int
	failed  int
	lastErr error
}

func (t *tally) String() string {
	var parts []string
	ids := make([]string, 0, len(t.by))
	for id := range t.by {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		parts = append(parts, fmt.Sprintf("%s ×%d", id, t.by[id]))
	}
	s := fmt.Sprintf("%s: %d connection(s)", t.address, t.tries)
	if len(parts) > 0 {
		s += " answered by " + strings.Join(parts, ", ")
	}
	if t.failed > 0 {
		s += fmt.Sprintf("; %d failed (last: %v)", t.failed, t.lastErr)
	}
	return s
}

// NotFoundError says that no try reached a job's node, and who answered.
type NotFoundError struct {
	JobID, Node string
	Tried       []string
	Attempts    int
}

func (e *NotFoundError) Error() string {
	return fmt.Sprintf("job %s runs on node %s, which no connection reached (%s). The node may be down or out of the balancer; "+
		"to reach it directly, add it to the node directory: --nodes %s=HOST:PORT (or JOBLET_NODES), or an rnx config entry named %s; "+
		"--route-attempts raises the %d connections tried through a balancer",
		e.JobID, e.Node, strings.Join(e.Tried, "; "), e.Node, e.Node, e.Attempts)
}

// Reach returns a connection to the node that runs job id: the node the
// ID names, found as the package comment says. An ID from before IDs
// named their node gets the selected entry's node, as before (its search
// would have no end). The caller closes the connection.
func (r *Router) Reach(ctx context.Context, id string) (*Node, error) {
	tag, ok := jobid.Node(id)
	if !ok {
		return nil, fmt.Errorf("%q is not a job ID: IDs are NODE_ then 12 hex digits (as `rnx job run` prints them)", id)
	}
	if tag == "" {
		return r.dial(ctx, r.Cfg.Nodes[r.Entry].Address)
	}
	isIt := func(nodeID string) bool { return nodeID != "" && jobid.Tag(nodeID) == tag }
	var tried []*tally
	try := func(address string, max int, giveUpOnOne bool) *Node {
		t := &tally{address: address, by: map[string]int{}}
		tried = append(tried, t)
		for t.tries < max && ctx.Err() == nil {
			t.tries++
			n, err := r.dial(ctx, address)
			if err != nil {
				t.failed++
				t.lastErr = err
				continue
			}
			if isIt(n.ID) {
				return n
			}
			n.Conn.Close()
			t.by[n.ID]++
			// An address that answered as one other node every time
			// is that node, not a balancer: stop asking it.
			if giveUpOnOne && len(t.by) == 1 && t.failed == 0 && t.tries >= min(8, max) {
				break
			}
		}
		return nil
	}
	// The directory's entries named after the node, directly.
	for _, d := range r.Dir.Named(isIt) {
		if n := try(d.Address, 1, false); n != nil {
			return n, nil
		}
	}
	// The selected entry (a balancer, usually), up to Attempts
	// connections; then every other address of the directory once: a
	// node's own entry answers as that node.
	sel := r.Cfg.Nodes[r.Entry].Address
	if !isIt(r.Entry) {
		if n := try(sel, r.attempts(), true); n != nil {
			return n, nil
		}
	}
	for _, d := range r.Dir.Nodes {
		if d.Address != sel && !(d.Name != "" && isIt(d.Name)) {
			if n := try(d.Address, 1, false); n != nil {
				return n, nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("looking for node %s of job %s: %w (--timeout)", tag, id, err)
	}
	e := &NotFoundError{JobID: id, Node: tag, Attempts: r.attempts()}
	for _, t := range tried {
		e.Tried = append(e.Tried, t.String())
	}
	return nil, e
}

// Sweep connects to every node it can find: each directory address once,
// and through the selected entry, unless it is named after the node that
// answers (a balancer, then), new connections until 3×Attempts are spent
// or ten times as many tries in a row as nodes found brought no new one
// (at least 10). Through round-robin that finds every healthy node; through
// a balancer that picks at random, the last node of N is missed with odds
// (1-1/N)^(10(N-1)): at most 1 in 1,000 (N=2) while the bound holds. A
// fleet that must be exact lists its nodes in the directory. It returns one connection per node id,
// by id, and what failed.
func (r *Router) Sweep(ctx context.Context) ([]*Node, []error) {
	found := map[string]*Node{}
	var problems []error
	keep := func(n *Node) bool {
		if _, dup := found[n.ID]; dup || n.ID == "" {
			n.Conn.Close()
			return false
		}
		found[n.ID] = n
		return true
	}
	for _, d := range r.Dir.Nodes {
		first, err := r.dial(ctx, d.Address)
		if err != nil {
			problems = append(problems, fmt.Errorf("%s: %w", d.Address, err))
			continue
		}
		id := first.ID
		keep(first)
		if d.Address != r.Cfg.Nodes[r.Entry].Address || jobid.Tag(d.Name) == jobid.Tag(id) {
			continue // asked once: only the selected entry is searched through
		}
		here := map[string]bool{id: true}
		quiet, tries, failed := 0, 1, 0
		var lastErr error
		for tries < 3*r.attempts() && quiet < max(10, 10*len(here)) && ctx.Err() == nil {
			tries++
			n, err := r.dial(ctx, d.Address)
			if err != nil {
				failed++
				lastErr = err
				quiet++
				continue
			}
			if here[n.ID] {
				quiet++
			} else {
				here[n.ID], quiet = true, 0
			}
			keep(n)
		}
		if failed > 0 {
			problems = append(problems, fmt.Errorf("%s: %d of %d connections failed (last: %w)", d.Address, failed, tries, lastErr))
		}
	}
	out := make([]*Node, 0, len(found))
	for _, n := range found {
		out = append(out, n)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	if len(out) == 0 && len(problems) == 0 {
		problems = append(problems, errors.New("the node directory is empty"))
	}
	return out, problems
}
