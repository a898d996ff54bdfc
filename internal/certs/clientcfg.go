package certs

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// RefreshClientConfig rewrites the rnx config at path with the current
// client certificate of each node entry's role and the current trust
// bundle, from the store. only, when set, limits it to that role's entries.
// It returns the entries it updated.
func RefreshClientConfig(ctx context.Context, st secretstore.Store, prefix, path string, only pki.Role) ([]string, error) {
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return nil, err
	}
	n := Names{Prefix: prefix}
	// Only what a client may read: the CA certificate, the trust bundle and
	// the pairs of the roles it holds. Never the CA key.
	want := []string{n.CACert(), n.Bundle(), n.CRL()}
	for _, name := range cfg.NodeNames() {
		if c, err := pki.ParseCert([]byte(cfg.Nodes[name].Cert)); err == nil {
			if role, err := pki.RoleOf(c); err == nil && (only == "" || role == only) && !slices.Contains(want, n.ClientCert(role)) {
				want = append(want, n.ClientCert(role), n.ClientKey(role))
			}
		}
	}
	vals, err := st.Get(ctx, want)
	if err != nil {
		return nil, fmt.Errorf("read client certificates from the store: %w", err)
	}
	ca, err := pki.ParseCert([]byte(vals[n.CACert()]))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, n.CACert(), err)
	}
	trust, err := trustFrom(vals[n.Bundle()], ca, n.Bundle())
	if err != nil {
		return nil, err
	}
	trustPEM := string(pki.EncodeCerts(trust...))
	if _, _, err := revokedIn(vals[n.CRL()], trust, n.CRL()); err != nil {
		return nil, err
	}
	var updated []string
	for _, name := range cfg.NodeNames() {
		node := cfg.Nodes[name]
		cert, err := pki.ParseCert([]byte(node.Cert))
		if err != nil {
			return nil, fmt.Errorf("node %q in %s: %w", name, path, err)
		}
		role, err := pki.RoleOf(cert)
		if err != nil {
			return nil, fmt.Errorf("node %q in %s: %w", name, path, err)
		}
		if only != "" && role != only {
			continue
		}
		c, k := vals[n.ClientCert(role)], vals[n.ClientKey(role)]
		if _, err := parsePair(c, k, n.ClientCert(role), n.ClientKey(role)); err != nil {
			return nil, err
		}
		node.Cert, node.Key, node.CA, node.CRL = c, k, trustPEM, vals[n.CRL()]
		updated = append(updated, name)
	}
	if len(updated) == 0 {
		return nil, fmt.Errorf("no node in %s carries role %q", path, only)
	}
	sort.Strings(updated)
	b, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	return updated, atomicfile.WriteFile(path, b, 0o600)
}
