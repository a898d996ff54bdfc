package certs

import (
	"fmt"
	"os"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// A client learns revocations from any node it talks to (NodeInfo.crl),
// without access to the store. It takes a node's CRL only when a CA its
// config trusts signed it (a node cannot forge one) and it is numbered
// above the CRL the config holds (a node, or whoever wrote the store,
// cannot roll it back: the newest CRL a config has verified stays).

// AdoptCRL takes crlPEM, handed out by the node entry from, into every
// entry of cfg whose trust verifies it and which holds an older CRL or
// none, and returns those entries (sorted). A CRL that from's own trust
// does not verify is refused with the reason; one that is not newer
// changes nothing.
func AdoptCRL(cfg *config.Rnx, from string, crlPEM []byte) ([]string, error) {
	if n := cfg.Nodes[from]; n != nil {
		if err := verifiesFor(n, crlPEM); err != nil {
			return nil, fmt.Errorf("node %q handed out a CRL this config cannot use (%v): ignored; the config keeps its own", from, err)
		}
	}
	offered, err := pki.CRLNumber(crlPEM)
	if err != nil || offered == nil {
		return nil, fmt.Errorf("node %q handed out a CRL without a number: ignored", from)
	}
	var updated []string
	for _, name := range cfg.NodeNames() {
		n := cfg.Nodes[name]
		if verifiesFor(n, crlPEM) != nil {
			continue // another fleet's entry
		}
		// The one rule (acceptCRL): newer, and dropping nothing this
		// config's CRL revokes (a rollback, then a revoke on top of it,
		// would un-revoke). verifiesFor parsed the entry's trust.
		cas, _ := pki.ParseCerts([]byte(n.CA))
		if n.CRL == string(crlPEM) || !acceptCRL(n.CRL, string(crlPEM), cas).taken() {
			continue
		}
		n.CRL = string(crlPEM)
		updated = append(updated, name)
	}
	return updated, nil
}

func verifiesFor(n *config.Node, crlPEM []byte) error {
	cas, err := pki.ParseCerts([]byte(n.CA))
	if err != nil {
		return err
	}
	_, err = pki.ParseCRL(crlPEM, cas)
	return err
}

// AdoptCRLFile applies AdoptCRL to the rnx config at path, read afresh (so
// a concurrent `rnx config refresh` is not undone), and rewrites it
// atomically with its mode kept when an entry changed.
func AdoptCRLFile(path, from string, crlPEM []byte) ([]string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, err
	}
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return nil, err
	}
	updated, err := AdoptCRL(cfg, from, crlPEM)
	if err != nil || len(updated) == 0 {
		return nil, err
	}
	b, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(path, b, fi.Mode().Perm()); err != nil {
		return nil, fmt.Errorf("keep the CRL learned from node %q in %s: %w", from, path, err)
	}
	return updated, nil
}
