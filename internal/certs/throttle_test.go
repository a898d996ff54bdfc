package certs_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// throttlingStore answers ErrThrottled (as the awssm store does once the
// SDK's retries are spent) to the reads decide picks, and counts every call.
type throttlingStore struct {
	secretstore.Store
	decide                    func(n int32) bool // n: this read's number, from 1
	reads, throttled, creates atomic.Int32
}

func (s *throttlingStore) Get(ctx context.Context, names []string) (map[string]string, error) {
	n := s.reads.Add(1)
	if s.decide(n) {
		s.throttled.Add(1)
		return nil, fmt.Errorf("secretsmanager:GetSecretValue on %s: %w: Rate exceeded", names[0], secretstore.ErrThrottled)
	}
	return s.Store.Get(ctx, names)
}

func (s *throttlingStore) Create(ctx context.Context, sec secretstore.Secret) error {
	s.creates.Add(1)
	return s.Store.Create(ctx, sec)
}

// A node joining a finished fleet whose first reads are throttled (a burst
// reading the fleet at once) waits and reads again instead of failing: one
// read per throttle plus the one that answers, and no create.
func TestThrottledJoinReadsAgain(t *testing.T) {
	mem := storetest.NewMemoryStore()
	bootstrap(t, opts(t, mem))
	st := &throttlingStore{Store: mem, decide: func(n int32) bool { return n <= 2 }}
	bootstrap(t, opts(t, st))
	if r, c := st.reads.Load(), st.creates.Load(); r != 3 || c != 0 {
		t.Fatalf("joining with 2 throttled reads: %d reads, %d creates; want 3 and 0", r, c)
	}
}

// A store that throttles every read: the joining node fails, naming the
// throttle, after 3 reads: it does not hammer a throttled store, and ends
// well inside the command's deadline.
func TestThrottledJoinGivesUp(t *testing.T) {
	mem := storetest.NewMemoryStore()
	bootstrap(t, opts(t, mem))
	st := &throttlingStore{Store: mem, decide: func(int32) bool { return true }}
	_, err := boot(context.Background(), opts(t, st))
	if !errors.Is(err, secretstore.ErrThrottled) {
		t.Fatalf("want the throttle as the cause, got %v", err)
	}
	if r := st.reads.Load(); r != 3 {
		t.Fatalf("%d reads against a store that throttles every one, want 3", r)
	}
}

// A burst of first nodes against an empty store where each node's first
// read, and every third after, is throttled: every node succeeds, one CA,
// and a losing node's calls stay bounded (its one lost create, the waits'
// reads and the throttled ones read again).
func TestThrottledBurstLosersConverge(t *testing.T) {
	const nodes = 20
	mem := storetest.NewMemoryStore()
	stores := make([]*throttlingStore, nodes)
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := 0; i < nodes; i++ {
		stores[i] = &throttlingStore{Store: mem, decide: func(n int32) bool { return n == 1 || n%3 == 0 }}
		o := opts(t, stores[i])
		o.AwaitFirst = 20 * time.Millisecond
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, errs[i] = boot(ctx, o)
		}(i)
	}
	wg.Wait()
	var creates, reads, throttled int32
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		creates, reads, throttled = creates+stores[i].creates.Load(), reads+stores[i].reads.Load(), throttled+stores[i].throttled.Load()
		// The creator: its creates, and a few throttled reads read again.
		if c := stores[i].creates.Load() + stores[i].reads.Load(); c > int32(len(names.All()))+3 {
			t.Errorf("node %d made %d store calls", i, c)
		}
	}
	most := int32(len(names.All()) + nodes - 1)
	if creates > most {
		t.Fatalf("%d creates for %d nodes, want at most %d", creates, nodes, most)
	}
	t.Logf("%d nodes, first read and every third throttled: %.2f calls per node (%d creates, %d reads, %d throttled)",
		nodes, float64(creates+reads)/nodes, creates, reads, throttled)
}

// A store that cannot be reached is not waited for: only a throttle says
// that waiting helps (the client already retried the connection).
func TestUnreachableStoreFailsAtOnce(t *testing.T) {
	mem := storetest.NewMemoryStore()
	bootstrap(t, opts(t, mem))
	unreachable := secretstore.Kind("unreachable", secretstore.ErrTemporary)
	st := &failingStore{Store: mem, err: unreachable}
	if _, err := boot(context.Background(), opts(t, st)); !errors.Is(err, unreachable) {
		t.Fatalf("want the unreachable store as the cause, got %v", err)
	}
	if r := st.reads.Load(); r != 1 {
		t.Fatalf("%d reads of an unreachable store, want 1", r)
	}
}

type failingStore struct {
	secretstore.Store
	err   error
	reads atomic.Int32
}

func (s *failingStore) Get(context.Context, []string) (map[string]string, error) {
	s.reads.Add(1)
	return nil, s.err
}
