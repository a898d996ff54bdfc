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
	mem := secretstore.NewMemoryStore()
	bootstrap(t, opts(t, mem))
	st := &throttlingStore{Store: mem, decide: func(n int32) bool { return n <= 3 }}
	bootstrap(t, opts(t, st))
	if r, c := st.reads.Load(), st.creates.Load(); r != 4 || c != 0 {
		t.Fatalf("joining with 3 throttled reads: %d reads, %d creates; want 4 and 0", r, c)
	}
}

// A store that throttles every read: the joining node fails at the
// command's deadline, naming the throttle, after a bounded number of reads
// (the pauses grow from 125 ms): it does not hammer a throttled store.
func TestThrottledJoinGivesUpAtDeadline(t *testing.T) {
	mem := secretstore.NewMemoryStore()
	bootstrap(t, opts(t, mem))
	st := &throttlingStore{Store: mem, decide: func(int32) bool { return true }}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := boot(ctx, opts(t, st))
	if !errors.Is(err, secretstore.ErrThrottled) {
		t.Fatalf("want the throttle as the cause, got %v", err)
	}
	if r := st.reads.Load(); r > 10 {
		t.Fatalf("%d reads in 2 s against a store that throttles every one", r)
	}
}

// A burst of first nodes against an empty store that throttles one read in
// three: every node succeeds, one CA, and a losing node's calls stay
// bounded (its one lost create, the waits' reads and the retried throttles).
func TestThrottledBurstLosersConverge(t *testing.T) {
	const nodes = 20
	st := &throttlingStore{Store: secretstore.NewMemoryStore(), decide: func(n int32) bool { return n%3 == 0 }}
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := 0; i < nodes; i++ {
		o := opts(t, st)
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
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	most := int32(len(names.All()) + nodes - 1)
	if c := st.creates.Load(); c > most {
		t.Fatalf("%d creates for %d nodes, want at most %d", c, nodes, most)
	}
	perNode := float64(st.creates.Load()+st.reads.Load()) / nodes
	if perNode > 12 {
		t.Fatalf("%.1f store calls per node (%d creates, %d reads, %d throttled)", perNode, st.creates.Load(), st.reads.Load(), st.throttled.Load())
	}
	t.Logf("%d nodes, one read in 3 throttled: %.2f calls per node (%d creates, %d reads, %d throttled)", nodes, perNode, st.creates.Load(), st.reads.Load(), st.throttled.Load())
}

// A store that cannot be reached is not waited for: only a throttle says
// that waiting helps (the client already retried the connection).
func TestUnreachableStoreFailsAtOnce(t *testing.T) {
	mem := secretstore.NewMemoryStore()
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
