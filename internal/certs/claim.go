package certs

// Claims: create-only writes that decide which node's value the fleet
// keeps.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	mathrand "math/rand/v2"
	"time"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// readBack is a claim's own read of what it claims (and what goes with
// it): whether the create-only write it made, or lost, left a value, and
// whose. Every other read of the store goes through state.go.
func readBack(ctx context.Context, st secretstore.Store, names ...string) (map[string]string, error) {
	return st.Get(ctx, names)
}

// claimFirst makes the fleet's first claim (the CA key, or the KMS key
// reference), create-only. A node that loses it does not race the winner
// for every other secret (most of those creates would fail, and under
// Secrets Manager's write quota they are what throttles an auto-scaling
// burst): it waits for the winner to finish, then adopts what it wrote.
// vals is updated in place with what it read.
//
// In a burst the store has throttled (contended), it first reads the claim
// (GetSecretValue, a quota a hundred times the create's): a node that finds
// it taken loses without a create. Under Secrets Manager's 50 creates/s the
// losers' creates would take the tokens the winner needs for the fleet's
// dozen creates, and delay every node waiting for them.
func (b *bootstrapper) claimFirst(ctx context.Context, vals map[string]string, name, value string) (map[string]string, bool, error) {
	taken := false
	if contended(b.f.Store) {
		got, gerr := readBack(ctx, b.f.Store, name)
		taken = gerr == nil && got[name] != ""
	}
	err := secretstore.ErrExist
	switch {
	case taken:
	case contended(b.f.Store):
		// A throttled create here most likely lost its token to another
		// node's claim: the first read back waits long enough (half a
		// second to one and a half) for that create to be answered, where
		// a retry within its round trip would take a token the winner's
		// next create needs.
		err = b.createFrom(ctx, name, value, time.Second)
	default:
		// The usual case (one create), or a read that did not settle it:
		// the create-only write decides.
		err = b.createOrAdopt(ctx, name, value)
	}
	switch {
	case err == nil:
		b.claimed = true
		return map[string]string{name: value}, true, nil
	case errors.Is(err, secretstore.ErrExist):
		fresh, err := b.awaitFleet(ctx, -1, b.o.AwaitStall)
		if err != nil {
			return nil, false, err
		}
		maps.Copy(vals, fresh)
		if fresh[name] == "" {
			return nil, false, fmt.Errorf("%s was reported to exist but cannot be read back: it may be scheduled for deletion; restore it (`aws secretsmanager restore-secret --secret-id %s`) or wait and re-run", name, name)
		}
		return fresh, false, nil
	default:
		return nil, false, fmt.Errorf("store %s: %w", name, err)
	}
}

// claim creates name with value, create-only. When another node created it
// first it reads back the winner's value, together with also (read in the
// same call). created says whose value it is.
func (b *bootstrapper) claim(ctx context.Context, name, value string, also ...string) (got map[string]string, created bool, err error) {
	err = b.createOrAdopt(ctx, name, value)
	switch {
	case err == nil:
		return map[string]string{name: value}, true, nil
	case errors.Is(err, secretstore.ErrExist):
		got, err := getPatiently(ctx, b.f.Store, append([]string{name}, also...))
		if err != nil {
			return nil, false, fmt.Errorf("read %s after losing the race to create it: %w", name, err)
		}
		if got[name] == "" {
			return nil, false, fmt.Errorf("%s was reported to exist but cannot be read back: it may be scheduled for deletion; restore it (`aws secretsmanager restore-secret --secret-id %s`) or wait and re-run", name, name)
		}
		return got, false, nil
	default:
		return nil, false, fmt.Errorf("store %s: %w", name, err)
	}
}

// contended reports whether the store has throttled this process (only
// the Secrets Manager store tells).
func contended(st secretstore.Store) bool {
	t, ok := st.(interface{ Throttled() bool })
	return ok && t.Throttled()
}

// createOrAdopt creates a secret; when the write fails for now (throttled: a
// fleet starting at once throttles creates; a 5xx; a lost answer) it waits a
// jittered backoff, then re-reads (the write may have succeeded, or another
// node created the secret meanwhile; reads have a far larger quota) and
// reports ErrExist if it now exists, else tries again, until ctx ends.
//
// The node that won the fleet's first claim (b.claimed) makes the rest of
// its dozen creates one after another, and no other node makes them (one
// completes them only once it finds this one stalled, and a create of a
// secret that exists then reports it as the read would): under a throttled
// create quota, a throttled create was not made (Secrets Manager refuses it
// before it acts; a store that was throttled makes one attempt per create),
// so it is tried again without the read, at short pauses (pace), taking
// each token soon after the quota refills it rather than up to seconds
// later. Nodes that contend for a claim read before every try: the read
// tells a loser it lost without spending a create the winner needs.
func (b *bootstrapper) createOrAdopt(ctx context.Context, name, value string) error {
	return b.createFrom(ctx, name, value, 100*time.Millisecond)
}

// pace is the mean pause between the paced tries of the fleet's creator
// (createOrAdopt), for pacedTries tries (three seconds, three times the
// refill of a quota of one create a second); then the backoff grows to a
// second.
const (
	pace       = 150 * time.Millisecond
	pacedTries = 20
)

// createFrom is createOrAdopt starting from backoff.
func (b *bootstrapper) createFrom(ctx context.Context, name, value string, backoff time.Duration) error {
	var last error // the last real cause, for when the deadline ends the wait
	for try := 1; ; try++ {
		err := b.f.Store.Create(ctx, b.names.Secret(name, value))
		if ctx.Err() != nil && last != nil {
			return fmt.Errorf("%w (gave up at the command's deadline)", last)
		}
		if !errors.Is(err, secretstore.ErrTemporary) {
			return err
		}
		last = err
		paced := b.claimed && errors.Is(err, secretstore.ErrThrottled) && contended(b.f.Store)
		wait := backoff/2 + time.Duration(mathrand.Int64N(int64(backoff)))
		switch {
		case paced && try <= pacedTries:
			wait = pace/2 + time.Duration(mathrand.Int64N(int64(pace)))
		case paced:
			backoff = min(backoff*2, time.Second)
		default:
			backoff = min(backoff*2, 5*time.Second)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up at the command's deadline)", err)
		case <-time.After(wait):
		}
		if !paced {
			got, gerr := readBack(ctx, b.f.Store, name)
			if gerr == nil && got[name] != "" {
				return fmt.Errorf("create %s: %w", name, secretstore.ErrExist)
			}
		}
	}
}
