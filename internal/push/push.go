// Package push delivers a new signed CRL (and trust state) to every node of the node
// directory right after the operator's command wrote it to the store
// (`joblet certs revoke`, `certs reissue --revoke`), so a revocation takes
// effect in seconds instead of at each node's next refresh.
//
// Delivery comes from the operator's command, dialing each node with the
// operator's rnx config (its client certificate): never node to node. The
// CRL is signed by the fleet's root, so the channel adds no trust: each
// node verifies it as it would from the store and takes it only when it is
// newer and drops no serial (NodeService.OfferCRL, internal/server/
// offer.go). A node the push misses takes it from the next rnx call that
// carries it, or from its periodic refresh.
package push

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/nodedir"
)

// Result is one node's answer to a push.
type Result struct {
	Node    string `json:"node,omitempty"` // its name in the directory, when it has one
	Address string `json:"address"`
	Taken   bool   `json:"taken"`
	// CRLNumber is the node's CRL number after the offer (hex), when it
	// answered.
	CRLNumber string `json:"crlNumber,omitempty"`
	// TrustVersion is the version of the signed trust state the node
	// holds after the offer, when it answered and holds one.
	TrustVersion uint64 `json:"trustVersion,omitempty"`
	// Why says why the node did not take it ("" when it did).
	Why string `json:"why,omitempty"`
}

// Report is what a push did, node by node, in the directory's order.
type Report struct {
	Results []Result `json:"results"`
}

// Took counts the nodes that hold the CRL now.
func (r Report) Took() int {
	n := 0
	for _, x := range r.Results {
		if x.Taken {
			n++
		}
	}
	return n
}

// Missed are the nodes that did not take it.
func (r Report) Missed() []Result {
	var out []Result
	for _, x := range r.Results {
		if !x.Taken {
			out = append(out, x)
		}
	}
	return out
}

// Text is the report for people: how many took it, then each miss and why.
func (r Report) Text(what string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "📣 %s pushed to %d of %d nodes", what, r.Took(), len(r.Results))
	for _, m := range r.Missed() {
		fmt.Fprintf(&b, "\n   ✗ %s: %s", label(m), m.Why)
	}
	if len(r.Missed()) > 0 {
		b.WriteString("\n   the nodes missed take it from the next rnx call that carries it, or at their next refresh from the store")
	}
	return b.String()
}

func label(r Result) string {
	if r.Node != "" {
		return r.Node + " (" + r.Address + ")"
	}
	return r.Address
}

// Limits of a push: nodes offered at once, one node's time, attempts.
const (
	parallel    = 16
	nodeTimeout = 10 * time.Second
	attempts    = 4
)

// CRL offers crlPEM to every node of dir, each dialed with the credentials
// of the rnx config entry it came from (a directory entry from the config)
// or of the config's selected entry at its own address (a list entry).
func CRL(ctx context.Context, dir nodedir.Directory, cfg *config.Rnx, selected string, crlPEM []byte) Report {
	return Offer(ctx, dir, cfg, selected, crlPEM, nil)
}

// Offer is CRL with the fleet's signed trust state as well (nil: none):
// what a rotation step, a node-issuing CA's re-key or `certs trust sign`
// pushes. A node takes the state before the CRL, each only when newer and
// signed by a root it holds; it counts as having taken the push when it
// holds both.
func Offer(ctx context.Context, dir nodedir.Directory, cfg *config.Rnx, selected string, crlPEM, trust []byte) Report {
	res := make([]Result, len(dir.Nodes))
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, n := range dir.Nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			res[i] = offer(ctx, n, cfg, selected, crlPEM, trust)
		}()
	}
	wg.Wait()
	return Report{Results: res}
}

func offer(ctx context.Context, n nodedir.Node, cfg *config.Rnx, selected string, crlPEM, trust []byte) Result {
	r := Result{Node: n.Name, Address: n.Address}
	name := selected
	if n.Entry {
		name = n.Name
	}
	_, base, err := cfg.Select(name)
	if err != nil {
		r.Why = err.Error()
		return r
	}
	entry := *base
	entry.Address = n.Address
	dialName := n.Name
	if dialName == "" {
		dialName = n.Address
	}
	conn, err := client.Dial(dialName, &entry)
	if err != nil {
		r.Why = err.Error()
		return r
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, nodeTimeout)
	defer cancel()
	wait := 250 * time.Millisecond
	for a := 1; ; a++ {
		ans, err := conn.Node.OfferCRL(ctx, &pb.OfferCRLRequest{Crl: crlPEM, TrustState: trust})
		if err == nil {
			r.Taken = (len(crlPEM) == 0 || ans.Taken) && (len(trust) == 0 || ans.TrustTaken)
			r.CRLNumber, r.TrustVersion, r.Why = ans.CrlNumber, ans.TrustVersion, ans.Reason
			if r.Taken {
				r.Why = ""
			} else if r.Why == "" {
				r.Why = "not taken"
			}
			return r
		}
		// A busy node (its offer tokens spent) or one briefly out of
		// reach is asked again; anything else is its answer.
		code := status.Code(err)
		if a == attempts || (code != codes.ResourceExhausted && code != codes.Unavailable) {
			// The report names the node already.
			r.Why = strings.TrimPrefix(conn.Explain(err).Error(), fmt.Sprintf("node %q (%s): ", dialName, n.Address))
			if code == codes.Unimplemented {
				r.Why = "the node's joblet predates CRL push (it takes the CRL at its next refresh): " + r.Why
			}
			return r
		}
		select {
		case <-ctx.Done():
			r.Why = ctx.Err().Error()
			return r
		case <-time.After(wait):
		}
		wait *= 2
	}
}
