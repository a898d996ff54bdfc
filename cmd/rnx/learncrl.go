package main

import (
	"fmt"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
)

// learnCRL asks the node just dialed for the fleet's CRL and keeps it in
// the config when a CA the config trusts signed it and it is newer than
// the config's: rnx learns revocations from any node, without store access
// or `rnx config refresh`. A server certificate the learned CRL lists is
// refused at once, this node's included. The config file is rewritten in
// place (mode kept); when it cannot be, rnx warns and still enforces the
// CRL for this run.
func (a *app) learnCRL(conn *client.Conn, name string) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	info, chains, err := conn.Hello(ctx)
	if err != nil {
		return err
	}
	if len(info.Crl) == 0 {
		return nil
	}
	updated, err := certs.AdoptCRL(a.cfg, name, info.Crl)
	if err != nil {
		fmt.Fprintln(a.errOut, "rnx: warning:", err)
		return nil
	}
	if len(updated) == 0 {
		return nil
	}
	if _, err := certs.AdoptCRLFile(a.path, name, info.Crl); err != nil {
		fmt.Fprintf(a.errOut, "rnx: warning: %v (enforced for this run only)\n", err)
	}
	return conn.CheckServer(chains, a.cfg.Nodes[name].CRL)
}
