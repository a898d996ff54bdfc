package certs

import (
	"context"
	"fmt"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// ReplicationTargets lists the fleet's shared secrets that exist in st, in a
// fixed order: the CA pair, each role's pair, the trust bundle, the KMS CA
// key reference and the CRL (the last three only once created).
func (fl *Fleet) ReplicationTargets(ctx context.Context) ([]string, error) {
	f := fl.defaults()
	n, st := f.names(), f.Store
	all := append(n.All(), n.Bundle(), n.CAKMSKey(), n.CRL())
	vals, err := st.Get(ctx, all)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, name := range all {
		if _, ok := vals[name]; ok {
			names = append(names, name)
		}
	}
	return names, nil
}

// Replicate replicates the fleet's existing shared secrets (disaster
// recovery) to the replica regions st was opened with, and returns their
// names. A store that cannot replicate is ErrUsage.
func (fl *Fleet) Replicate(ctx context.Context) ([]string, error) {
	f := fl.defaults()
	r, ok := f.Store.(secretstore.Replicator)
	if !ok {
		return nil, fmt.Errorf("%w: replicate works on Secrets Manager: set USE_SECRETS_MANAGER=true", ErrUsage)
	}
	names, err := f.ReplicationTargets(ctx)
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no secrets under prefix %q to replicate: bootstrap the fleet first", f.Prefix)
	}
	if err := r.Replicate(ctx, names); err != nil {
		return nil, err
	}
	return names, nil
}
