package certs

import (
	"context"
	"fmt"
	"strings"

	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
)

// NodeInfo asks the node at address for its id and the SHA-256 fingerprint
// of the CA that signed the certificate it serves.
type NodeInfo func(ctx context.Context, address string) (nodeID, issuerSHA256 string, err error)

// DialNodeInfo is a NodeInfo that connects to each address directly with the
// default node credentials of the rnx config at path (an operator config).
func DialNodeInfo(path string) (NodeInfo, error) {
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return nil, fmt.Errorf("asking the nodes needs an operator rnx config: %w", err)
	}
	_, base, err := cfg.Select("")
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, address string) (string, string, error) {
		n := *base
		n.Address = address
		conn, err := client.Dial(n.Address, &n)
		if err != nil {
			return "", "", err
		}
		defer conn.Close()
		info, err := conn.Info(ctx)
		if err != nil {
			return "", "", err
		}
		return info.NodeId, info.ServerCertIssuerSha256, nil
	}, nil
}

// ProbeNodes asks each node which CA signed the certificate it serves and
// reports whether that is currentCA (a fingerprint, as CAInfo.Fingerprint).
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
