package certs

// Waiting: for the node creating a fleet, and through a store's throttling.

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// awaitFleet waits for the node that won the first claim to create the
// rest of the fleet, with a growing pause between tries. A try reads the
// whole state (one batch call) first, every fourth time, and once the last
// secret a creating node writes (the node-issuing CA) is there; the tries between read that one
// secret only, so a burst of waiting nodes under Secrets Manager's quotas
// spends the large GetSecretValue quota, one call each, not the batch one.
// It returns when every shared secret is there, or when nothing new has
// appeared for stall (the winner crashed: this node then completes what is
// missing, as after any crash). seen is how many were there already.
func (b *bootstrapper) awaitFleet(ctx context.Context, seen int, stall time.Duration) (map[string]string, error) {
	b.waited = true
	sc := b.scope()
	pause, progress := b.o.AwaitFirst, time.Now()
	for try := 1; ; try++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause/2 + time.Duration(mathrand.Int64N(int64(pause)))):
		}
		pause = min(pause*3/2, 3*time.Second)
		if try > 1 && try%4 != 0 {
			created, err := b.f.readCreated(ctx)
			if errors.Is(err, secretstore.ErrTemporary) {
				continue // throttled while a burst waits: try again after the next pause
			}
			if err != nil {
				return nil, err
			}
			if !created {
				continue
			}
		}
		s, err := b.f.readState(ctx, sc)
		if errors.Is(err, secretstore.ErrTemporary) {
			// A whole burst reads at once when the fleet appears: a read
			// throttled after the client's retries waits for the next try
			// (the command's deadline still bounds the whole wait).
			b.f.Log.Debug("reading the fleet was throttled; trying again", "err", err)
			continue
		}
		if err != nil {
			return nil, err
		}
		have, want := b.present(s.vals)
		switch {
		case have == want:
			return s.vals, nil
		case have > seen:
			seen, progress = have, time.Now()
		case time.Since(progress) >= stall:
			b.f.Log.Info("the node that created the fleet stopped before finishing; completing what is missing", "have", have, "of", want)
			return s.vals, nil
		}
	}
}

// present counts the fleet's shared secrets in vals, and how many a
// complete fleet has: a fleet whose CA allows no CA under it (made before
// the node-issuing CA) is complete without the node-issuing pair.
func (b *bootstrapper) present(vals map[string]string) (have, want int) {
	legacy := false
	if c, err := pki.ParseCert([]byte(vals[b.names.CACert()])); err == nil {
		legacy = !pki.AllowsIntermediates(c)
	}
	for _, n := range b.scope().shared(b.names) {
		if legacy && (n == b.names.NodeCACert() || n == b.names.NodeCAKey()) {
			continue
		}
		want++
		if vals[n] != "" {
			have++
		}
	}
	return have, want
}

// readPatiently reads the fleet's state; a read throttled even after the
// client's own retries (a burst of joining nodes reads the finished fleet
// at once) is tried again after a jittered pause, up to patientReads reads
// in all and within the command's deadline. Anything else, an unreachable
// store included, fails at once: only a throttle says that waiting helps.
func (b *bootstrapper) readPatiently(ctx context.Context, sc scope) (*state, error) {
	var st *state
	err := patiently(ctx, func() (err error) {
		st, err = b.f.readState(ctx, sc)
		return err
	})
	return st, err
}

// getPatiently is readBack, patient as readPatiently is.
func getPatiently(ctx context.Context, s secretstore.Store, names []string) (map[string]string, error) {
	var got map[string]string
	err := patiently(ctx, func() (err error) {
		got, err = readBack(ctx, s, names...)
		return err
	})
	return got, err
}

// patientReads bounds the reads of one patient read: a burst passes
// within a few (each already spends its client's retries, up to about
// 20 s when the store keeps throttling), and a store that throttles for
// good fails the command well inside its default deadline (2 min).
const patientReads = 3

// patiently runs read until it succeeds, fails other than throttled, or
// patientReads reads or ctx run out (then the last error says why). The
// pauses are drawn from half to one and a half of 500 ms, then 1 s, so
// nodes throttled together do not come back together.
func patiently(ctx context.Context, read func() error) error {
	pause := 500 * time.Millisecond
	for n := 1; ; n++ {
		err := read()
		if err == nil || !errors.Is(err, secretstore.ErrThrottled) || ctx.Err() != nil || n == patientReads {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (gave up at the command's deadline)", err)
		case <-time.After(pause/2 + time.Duration(mathrand.Int64N(int64(pause)))):
		}
		pause *= 2
	}
}
