package certs

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ehsaniara/joblet/internal/nodefacts"
	"github.com/ehsaniara/joblet/internal/pki"
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
func ProbeNodes(ctx context.Context, addrs []string, currentCA string, info NodeInfo, outgoing []string, since time.Time) []NodeReport {
	var out []NodeReport
	for _, a := range addrs {
		rep := NodeReport{Address: strings.TrimSpace(a)}
		if rep.Address == "" {
			continue
		}
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
		out = append(out, rep)
	}
	return out
}
