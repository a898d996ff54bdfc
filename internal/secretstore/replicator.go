package secretstore

import "context"

// Replicator is a store that can copy existing secrets to the replica
// regions it was opened with (Secrets Manager; see awssm.CreateOptions).
type Replicator interface {
	Replicate(ctx context.Context, names []string) error
}
