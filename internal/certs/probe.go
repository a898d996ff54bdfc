package certs

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/nodefacts"
)

// NodeFacts, ClientsSeen and NodeInfo are the node's answers, defined
// with the package that dials nodes as well (nodefacts).
type (
	NodeFacts   = nodefacts.Facts
	ClientsSeen = nodefacts.ClientsSeen
	NodeInfo    = nodefacts.Asker
)

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
