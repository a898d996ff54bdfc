package certs

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"

	"github.com/ehsaniara/joblet/internal/nodefacts"
)

// NodeFacts, ClientsSeen and NodeInfo are the node's answers, defined
// with the package that dials nodes as well (nodefacts).
type (
	NodeFacts   = nodefacts.Facts
	ClientsSeen = nodefacts.ClientsSeen
	NodeInfo    = nodefacts.Asker
)

// ProbeRotation is ProbeNodes for a rotation's state: the current CA, the
// outgoing ones, and whether each node already trusts the pending CA (the
// precondition of `promote`).
func ProbeRotation(ctx context.Context, addrs []string, st *RotationStatus, info NodeInfo, since time.Time) []NodeReport {
	var pendingSubject []byte
	if st.Pending != nil {
		if kid, err := pki.ParseKeyIDHex(st.Pending.KeyID); err == nil && len(kid) > 0 {
			pendingSubject, _ = pki.CASubject(kid)
		}
	}
	var facts sync.Map // address -> NodeFacts, for the pending-CA check
	reps := ProbeNodes(ctx, addrs, st.Current.Fingerprint, func(ctx context.Context, a string) (NodeFacts, error) {
		f, err := info(ctx, a)
		facts.Store(a, f)
		return f, err
	}, st.Outgoing(), since)
	if pendingSubject == nil {
		return reps
	}
	for i := range reps {
		v, ok := facts.Load(reps[i].Address)
		if !ok || v.(NodeFacts).AcceptedCAs == nil {
			continue
		}
		trusts := slices.ContainsFunc(v.(NodeFacts).AcceptedCAs, func(s []byte) bool { return bytes.Equal(s, pendingSubject) })
		reps[i].TrustsPendingCA = &trusts
		if trusts {
			reps[i].Summary += "; trusts the pending CA"
		} else {
			reps[i].Summary += "; does not trust the pending CA yet (it does after its next refresh from the store: wait before `promote`)"
		}
	}
	return reps
}

// ProbeNodes asks each node which CA signed the certificate it serves and
// reports whether that is currentCA (a fingerprint, as CertInfo.Fingerprint),
// and whether it saw client certificates of the CAs with the key ids in
// outgoing (the CAs a finish stops trusting) since since. An unreachable
// node is reported, not an error.
//
// Nodes are asked at once (at most probeParallel at a time), each for at
// most probeTimeout: a fleet of hundreds is asked in seconds, and a node
// that accepts connections and never answers holds up nobody.
func ProbeNodes(ctx context.Context, addrs []string, currentCA string, info NodeInfo, outgoing []string, since time.Time) []NodeReport {
	var reps []NodeReport
	for _, a := range addrs {
		if a = strings.TrimSpace(a); a != "" {
			reps = append(reps, NodeReport{Address: a})
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, probeParallel)
	for i := range reps {
		wg.Add(1)
		sem <- struct{}{}
		go func(rep *NodeReport) {
			defer func() { <-sem; wg.Done() }()
			pctx, cancel := context.WithTimeout(ctx, probeTimeout)
			defer cancel()
			probeNode(pctx, rep, currentCA, info, outgoing, since)
		}(&reps[i])
	}
	wg.Wait()
	return reps
}

// probeParallel and probeTimeout bound ProbeNodes.
const (
	probeParallel = 16
	probeTimeout  = 15 * time.Second
)

func probeNode(ctx context.Context, rep *NodeReport, currentCA string, info NodeInfo, outgoing []string, since time.Time) {
	facts, err := info(ctx, rep.Address)
	id, issuer := facts.NodeID, facts.IssuerSHA256
	rep.NodeID, rep.IssuerSHA256 = id, issuer
	switch {
	case err != nil:
		rep.Summary = "unreachable: " + err.Error()
	case issuer == currentCA:
		rep.Current, rep.Summary = true, id+": serves a certificate from the current CA"
	default:
		rep.Summary = id + ": still serves a certificate from another CA (" + issuer + ")"
	}
	for _, kid := range outgoing {
		if seen, ok := facts.ClientIssuers[kid]; ok && !seen.LastSeen.Before(since) {
			rep.OldCAClients += seen.Handshakes
			if seen.LastSeen.After(rep.OldCALastSeen) {
				rep.OldCALastSeen = seen.LastSeen
			}
		}
	}
	if rep.OldCAClients > 0 {
		rep.Summary += fmt.Sprintf("; verified %d client certificates of the outgoing CA, the last at %s", rep.OldCAClients, rep.OldCALastSeen.UTC().Format(time.RFC3339))
	}
}

// FinishGate refuses a finish while a node that answered still serves a
// certificate from another CA than the current one: once the old CA leaves
// the trust, a client refreshed after finish could not verify it. Nodes
// that did not answer are named in warnings, not counted.
func FinishGate(nodes []NodeReport) (warnings []string, err error) {
	var behind, clients []string
	for _, nd := range nodes {
		switch {
		case nd.IssuerSHA256 == "" && !nd.Current:
			warnings = append(warnings, "could not ask "+nd.Address+": "+nd.Summary)
		case !nd.Current:
			behind = append(behind, nd.Address+" ("+nd.Summary+")")
		case nd.OldCAClients > 0:
			clients = append(clients, fmt.Sprintf("%s (%d, the last at %s)", nd.Address, nd.OldCAClients, nd.OldCALastSeen.UTC().Format(time.RFC3339)))
		}
	}
	if len(behind) > 0 {
		return warnings, fmt.Errorf("%d of %d nodes still serve a certificate from another CA than the current one: %s. Wait for their next refresh (or run `joblet certs renew` on them), check with `rotate-ca status --nodes`, or pass --force",
			len(behind), len(nodes), strings.Join(behind, "; "))
	}
	if len(clients) > 0 {
		return warnings, fmt.Errorf("clients still present certificates of the outgoing CA, which finish makes every node refuse: %s. Have them run `rnx config refresh` once, check with `rotate-ca status --nodes` (--client-window sets how far back counts), or pass --force",
			strings.Join(clients, "; "))
	}
	return warnings, nil
}

// Outgoing are the key ids of the CAs a finish stops trusting: every
// trusted CA but the one the rotation keeps, the pending CA while there is
// one (begun: clients refreshed since hold its certificates, and count as
// new), else the current one (the cross certificate shares that CA's key,
// so it is not among them).
func (st *RotationStatus) Outgoing() []string {
	keep := st.Current.KeyID
	if st.Pending != nil && st.Pending.KeyID != "" {
		keep = st.Pending.KeyID
	}
	var out []string
	for _, t := range st.Trusted {
		if t.KeyID != keep && t.KeyID != "" {
			out = append(out, t.KeyID)
		}
	}
	return out
}

// FinishCheck is what the finish gate asks with.
type FinishCheck struct {
	Nodes []string // addresses (HOST:PORT) of the nodes to ask; none: cannot check
	Info  NodeInfo // how to ask them (client.DialNodeInfo); nil without Nodes
	// RnxConfig is the operator rnx config Info asks with: its own client
	// certificate must not be from an outgoing CA (the nodes would count
	// its handshakes as an old client's).
	RnxConfig string
	Since     time.Time // the client handshakes that count are this recent
	Force     bool      // --force: the caller finishes whatever the gate says
}

// CheckFinish is the finish gate, whole: before rotate-ca finish, it asks
// the nodes which CA their certificate comes from and which CAs' client
// certificates they saw (FinishGate). warnings are to be shown; refused
// says why a finish must not run now (the caller may override it with
// --force); err is a failure to check at all. Without Info it cannot
// know, and says so (unless forced). Outside the promoted phase there is
// nothing to check: the step itself says what is wrong, or that it is done.
func (fl *Fleet) CheckFinish(ctx context.Context, c FinishCheck) (warnings []string, refused, err error) {
	if c.Info == nil {
		if !c.Force {
			warnings = append(warnings, "rotate-ca finish cannot check which CA the nodes serve from without --nodes (or JOBLET_NODES); check with `rotate-ca status --nodes` first")
		}
		return warnings, nil, nil
	}
	st, err := fl.RotationStatus(ctx)
	if err != nil {
		return nil, nil, err
	}
	if st.Phase != PhasePromoted {
		return nil, nil, nil
	}
	if ProbeIsOutgoing(c.RnxConfig, st.Outgoing()) && !c.Force {
		return nil, fmt.Errorf("the client certificate in %s (used to ask the nodes) is from the outgoing CA, so the nodes count its own handshakes as an old client: refresh it first (`rnx --config %s config refresh`)", c.RnxConfig, c.RnxConfig), nil
	}
	warnings, refused = FinishGate(ProbeRotation(ctx, c.Nodes, st, c.Info, c.Since))
	return warnings, refused, nil
}

// ProbeIsOutgoing reports whether the rnx config that asks the nodes holds
// a client certificate issued by one of the outgoing CAs (key ids).
func ProbeIsOutgoing(rnxCfg string, outgoing []string) bool {
	cfg, err := config.LoadRnx(rnxCfg)
	if err != nil {
		return false
	}
	_, n, err := cfg.Select("")
	if err != nil {
		return false
	}
	c, err := pki.ParseLeaf([]byte(n.Cert))
	return err == nil && slices.Contains(outgoing, pki.KeyIDHex(c.AuthorityKeyId))
}
