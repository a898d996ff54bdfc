package certs

// Waiting: for the node creating a fleet, and through a store's throttling.

import (
	"context"
	"errors"
	"fmt"
	"maps"
	mathrand "math/rand/v2"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// awaitFleet waits for the node that won the first claim to create the
// rest of the fleet, with a growing pause between tries. A try reads the
// whole state (one batch call) first, every fourth time, and once the
// node-issuing CA, the last pair a creating node writes, is there; the
// tries between read that one secret only, so a burst of waiting nodes
// under Secrets Manager's quotas spends the large GetSecretValue quota, one
// call each, not the batch one.
// It returns when every shared secret is there, or when nothing new has
// appeared for stall (the winner crashed: this node then completes what is
// missing, as after any crash). seen is how many were there already.
//
// A node that is no operator, once the fleet is complete, joins it as a
// joining node does (b.joined, errJoined): it reads what a node reads, not
// the root's and the roles' keys. In a burst the store has throttled
// (contended), every read of the whole state (a batch call, or one read
// per secret when the batch quota is spent) is put off until the creator
// has finished or stalled: the tries read the creator's last write (the
// signed trust state), and every fourth finds whether the creator has got
// further (two single reads at most, see creatorProgress) instead.
func (b *bootstrapper) awaitFleet(ctx context.Context, seen int, stall time.Duration) (map[string]string, error) {
	b.waited = true
	sc := b.scope()
	order := b.creationOrder()
	done := 0 // how many of order the creator has written, as last found
	// known: the creator's public secrets as the tries read them (they are
	// created once): the join after the wait reads only the rest.
	known := map[string]string{}
	pause, progress := b.o.AwaitFirst, time.Now()
	for try := 1; ; try++ {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pause/2 + time.Duration(mathrand.Int64N(int64(pause)))):
		}
		pause = min(pause*3/2, 3*time.Second)
		whole := try == 1 || try%4 == 0
		switch {
		case contended(b.f.Store) && whole && try > 1:
			d, err := b.creatorProgress(ctx, order, done, known)
			if errors.Is(err, secretstore.ErrTemporary) {
				continue
			}
			if err != nil {
				return nil, err
			}
			if d > done {
				done, progress = d, time.Now()
			}
			if d == len(order) {
				err := b.joinWaited(ctx, known)
				if errors.Is(err, secretstore.ErrTemporary) {
					continue
				}
				if !errors.Is(err, errNotJoined) {
					return nil, err
				}
			} else if time.Since(progress) < stall {
				continue
			}
			// Stalled, or a fleet this node cannot join: the whole state.
		case contended(b.f.Store) && try == 1:
			// The root's certificate, the creator's second write, once:
			// the join needs it, and a read now is one fewer when the
			// whole burst joins at once.
			got, err := readBack(ctx, b.f.Store, order[0])
			if err != nil && !errors.Is(err, secretstore.ErrTemporary) {
				return nil, err
			}
			maps.Copy(known, got)
			continue
		case contended(b.f.Store) || !whole:
			// The creator's last write: the signed trust state in a burst
			// (a node joins holding it); otherwise the node-issuing CA
			// just before it, as always (a wait as short as it was).
			last := order[len(order)-1]
			if !contended(b.f.Store) {
				last = b.names.NodeCACert()
			}
			got, err := readBack(ctx, b.f.Store, last)
			if errors.Is(err, secretstore.ErrTemporary) {
				continue // throttled while a burst waits: try again after the next pause
			}
			if err != nil {
				return nil, err
			}
			if got[last] == "" {
				continue
			}
			maps.Copy(known, got)
			err = b.joinWaited(ctx, known)
			if errors.Is(err, secretstore.ErrTemporary) {
				continue
			}
			if !errors.Is(err, errNotJoined) {
				return nil, err
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

// errJoined ends the full path of a node that waited for the fleet's
// creator and then joined the fleet (b.joined); errNotJoined says the
// fleet cannot be joined that way (an operator's run, or a fleet without
// a node-issuing CA): the node reads the whole state instead.
var (
	errJoined    = errors.New("joined the fleet its creator finished")
	errNotJoined = errors.New("not joined")
)

// joinWaited joins the fleet a waiting node found complete, with the
// join's read (nodeScope; what the wait read already, known, is not read
// again): errJoined with b.joined set, errNotJoined, or the read's error.
// The join checks what it got as any join does: a store that moved
// between the reads (a rotation step within the wait) is refused as
// inconsistent, and the bootstrap reads it afresh.
func (b *bootstrapper) joinWaited(ctx context.Context, known map[string]string) error {
	if b.operator {
		return errNotJoined
	}
	var rest []string
	for _, name := range nodeScope.names(b.names) {
		if known[name] == "" {
			rest = append(rest, name)
		}
	}
	vals, err := b.f.Store.Get(ctx, rest)
	if err != nil {
		return fmt.Errorf("read the shared certificates from %s: %w", b.f.StoreDesc, err)
	}
	for _, name := range nodeScope.names(b.names) {
		if v := known[name]; v != "" {
			vals[name] = v
		}
	}
	st := b.f.newState(vals)
	st.caKey = b.f.kmsKey(vals[b.names.CAKMSKey()])
	st.parse(nil)
	sh, _, err := b.join(ctx, st)
	switch {
	case err != nil:
		return err
	case sh == nil:
		return errNotJoined
	}
	b.joined = sh
	return errJoined
}

// creationOrder is the order a node creating the fleet writes its public
// shared secrets in (ensure; each pair's key just before its certificate):
// the root's certificate, each role's certificate, the node-issuing CA's,
// and last the signed trust state. A waiting node reads these, never the
// keys, to follow the creator.
func (b *bootstrapper) creationOrder() []string {
	n := b.names
	order := []string{n.CACert()}
	for _, r := range pki.Roles {
		order = append(order, n.ClientCert(r))
	}
	return append(order, n.NodeCACert(), n.Bundle())
}

// creatorProgress finds how far the fleet's creator has got since from
// (found before): whether it has finished (its last write, the signed
// trust state, is there: then the wait joins at once), and if not, since it
// writes order in order, whether the next (order[from]) is there: enough to
// judge the creator alive. Two single reads at most, where a binary search
// of order took three. Should the store hold them out of order (a crash
// completed by another node), the answer is only less exact: a wait that
// judges the creator stalled reads the whole state, as it always did.
func (b *bootstrapper) creatorProgress(ctx context.Context, order []string, from int, known map[string]string) (int, error) {
	if from >= len(order) {
		return from, nil
	}
	probe := []int{len(order) - 1}
	if from < len(order)-1 {
		probe = append(probe, from)
	}
	for _, i := range probe {
		got, err := readBack(ctx, b.f.Store, order[i])
		if err != nil {
			return 0, err
		}
		if got[order[i]] != "" {
			known[order[i]] = got[order[i]]
			return i + 1, nil
		}
	}
	return from, nil
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
