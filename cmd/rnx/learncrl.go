package main

import (
	"crypto/x509"
	"fmt"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
)

// learnCRL is how rnx learns revocations from any node, without store
// access or `rnx config refresh`. Every call carries the number of the CRL
// the config holds for the node; a node holding a newer one refuses the
// call before running it and hands its CRL over (internal/client/learn.go,
// internal/server/crlgate.go). rnx keeps it when a CA the config trusts
// signed it and it is newer than the config's (certs.AdoptCRL), refuses at
// once a node whose certificate it lists (this node's included), and only
// then is the call made again. A node with nothing newer costs nothing: no
// call of its own (rnx used to ask every node with GetNodeInfo before every
// command). The config file is rewritten in place (mode kept); when it
// cannot be, rnx warns and still enforces the CRL for this run.
//
// What a node hands out can only add revocations: a node cannot forge a CRL
// (it is verified against the config's CAs) nor roll one back (a lower
// number, or one that drops a serial the config's CRL lists, is ignored). A
// node whose certificate was revoked, run by whoever stole its key, would
// not hand out the CRL that revokes it, before or after a call: what
// protects a client from it is the CRL learned from the other nodes, which
// the handshake enforces.
func (a *app) learnCRL(conn **client.Conn, name string) client.Learn {
	return func(crl []byte, chains [][]*x509.Certificate) error {
		updated, err := certs.AdoptCRL(a.cfg, name, crl)
		if err != nil {
			fmt.Fprintln(a.errOut, "rnx: warning:", err)
			return nil
		}
		if len(updated) == 0 {
			return nil
		}
		if _, err := certs.AdoptCRLFile(a.path, name, crl); err != nil {
			fmt.Fprintf(a.errOut, "rnx: warning: %v (enforced for this run only)\n", err)
		}
		if len(chains) == 0 {
			return nil
		}
		return (*conn).CheckServer(chains, a.cfg.Nodes[name].CRL)
	}
}
