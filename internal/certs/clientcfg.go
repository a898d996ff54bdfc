package certs

import (
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// RefreshClientConfig rewrites the rnx config at path with the current
// client certificate of each node entry's role and the current trust
// bundle, from the store. only, when set, limits it to that role's entries.
// It returns the entries it updated.
// ClientRefresh says what RefreshClientConfig did.
type ClientRefresh struct {
	Updated []string // the node entries rewritten, sorted
	// Problems: why the store's CRL was not taken for some entry (missing,
	// rolled back, unverifiable); the config keeps the CRL it had.
	Problems []string
}

func (fl *Fleet) RefreshClientConfig(ctx context.Context, path string, only pki.Role) (*ClientRefresh, error) {
	f := fl.defaults()
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return nil, err
	}
	// Only what a client may read: the CA certificate, the trust bundle,
	// the CRL and the pairs of the roles it holds. Never the CA key.
	var roles []pki.Role
	for _, name := range cfg.NodeNames() {
		if c, _, err := pki.ParseChain([]byte(cfg.Nodes[name].Cert)); err == nil {
			if role, err := pki.RoleOf(c); err == nil && (only == "" || role == only) && !slices.Contains(roles, role) {
				roles = append(roles, role)
			}
		}
	}
	// pending: in the begun phase a refresh hands out the role's pending
	// certificate (see cross.go).
	s, err := f.readState(ctx, scope{roles: roles, pending: true})
	if err != nil {
		return nil, err
	}
	if s.caErr != nil {
		return nil, s.caErr
	}
	res := &ClientRefresh{}
	n, vals := s.n, s.vals
	var updated []string
	for _, name := range cfg.NodeNames() {
		node := cfg.Nodes[name]
		cert, _, err := pki.ParseChain([]byte(node.Cert))
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
		// Only a trust state signed by a root this entry trusts changes
		// whom it trusts (and so where it sends its jobs' secrets):
		// anything else in the store is ignored and reported.
		es := *s
		problem, err := es.holdTrust(node.CA, node.Trust, node.CRL)
		if err != nil {
			return nil, fmt.Errorf("node %q in %s: %w", name, path, err)
		}
		if problem != "" && !slices.Contains(res.Problems, problem) {
			res.Problems = append(res.Problems, problem)
		}
		c, k, err := es.clientMaterial(role)
		if err != nil {
			return nil, err
		}
		// The newest CRL this config has seen stays: a store whose CRL went
		// missing or back must not un-revoke a server.
		crl, problem := newestCRL(node.CRL, vals[n.CRL()], es.crlErr, n.CRL(), es.trust)
		if problem != "" && !slices.Contains(res.Problems, problem) {
			res.Problems = append(res.Problems, problem)
		}
		node.Cert, node.Key, node.CA, node.CRL, node.Trust = c, k, es.trustPEM(), crl, es.docValue()
		updated = append(updated, name)
	}
	if len(updated) == 0 {
		return nil, fmt.Errorf("no node in %s carries role %q", path, only)
	}
	sort.Strings(updated)
	res.Updated = updated
	b, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	return res, atomicfile.WriteFile(path, b, 0o600)
}
