package certs

import (
	"context"
	"fmt"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// ReplicationTargets lists the fleet's shared secrets that exist in the
// store: every secret any flow reads (wholeScope), so a replica region has
// whatever a node or an operator reads there, the cross certificate of a
// rotation included; in the order of scope.names.
func (fl *Fleet) ReplicationTargets(ctx context.Context) ([]string, error) {
	f := fl.defaults()
	n := f.names()
	s, err := f.readState(ctx, wholeScope)
	if err != nil {
		return nil, err
	}
	all, vals := wholeScope.names(n), s.vals
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
