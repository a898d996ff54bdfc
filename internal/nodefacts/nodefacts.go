// Package nodefacts is what a node says about itself when asked
// (GetNodeInfo): the vocabulary shared by the package that dials nodes
// (internal/client) and the lifecycle that acts on the answers
// (internal/certs), so that neither links the other.
package nodefacts

import (
	"context"
	"time"
)

// Facts is what a node says about itself (its NodeInfo).
type Facts struct {
	NodeID string
	// IssuerSHA256 is the fingerprint of the trusted root the certificate
	// it serves chains to.
	IssuerSHA256 string
	// ClientIssuers are the client certificates it verified since it
	// started, by the key id (pki.KeyIDHex) of the CA that issued them.
	ClientIssuers map[string]ClientsSeen
	// AcceptedCAs are the subjects (DER) of the CAs the node accepts client
	// certificates from, as its TLS handshake lists them: its trust as of
	// that handshake. nil when unknown.
	AcceptedCAs [][]byte
}

// ClientsSeen counts a node's verified client certificates of one CA.
type ClientsSeen struct {
	Handshakes int64
	LastSeen   time.Time
}

// Asker asks the node at address what it serves and has seen
// (client.DialNodeInfo in production).
type Asker func(ctx context.Context, address string) (Facts, error)
