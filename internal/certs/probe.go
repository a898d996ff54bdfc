package certs

import (
	"context"
	"strings"
)

// NodeInfo asks the node at address (client.DialNodeInfo in production) for its id and the SHA-256 fingerprint
// of the CA that signed the certificate it serves.
type NodeInfo func(ctx context.Context, address string) (nodeID, issuerSHA256 string, err error)

// ProbeNodes asks each node which CA signed the certificate it serves and
// reports whether that is currentCA (a fingerprint, as CertInfo.Fingerprint).
// An unreachable node is reported, not an error.
func ProbeNodes(ctx context.Context, addrs []string, currentCA string, info NodeInfo) []NodeReport {
	var out []NodeReport
	for _, a := range addrs {
		rep := NodeReport{Address: strings.TrimSpace(a)}
		if rep.Address == "" {
			continue
		}
		id, issuer, err := info(ctx, rep.Address)
		rep.NodeID, rep.IssuerSHA256 = id, issuer
		switch {
		case err != nil:
			rep.Summary = "unreachable: " + err.Error()
		case issuer == currentCA:
			rep.Current, rep.Summary = true, id+": serves a certificate from the current CA"
		default:
			rep.Summary = id + ": still serves a certificate from another CA (" + issuer + ")"
		}
		out = append(out, rep)
	}
	return out
}
