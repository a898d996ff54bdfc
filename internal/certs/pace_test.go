package certs_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// quotaStore is a store in a burst under Secrets Manager's create quota:
// it has throttled this process already (Throttled), refuses the first
// refuse creates of each secret in slow (ErrThrottled: not made), and
// counts single-secret reads by name.
type quotaStore struct {
	secretstore.Store
	slow   map[string]bool
	refuse int
	mu     sync.Mutex
	tries  map[string]int
	read   map[string]int
}

func (s *quotaStore) Throttled() bool { return true }

func (s *quotaStore) Create(ctx context.Context, sec secretstore.Secret) error {
	s.mu.Lock()
	s.tries[sec.Name]++
	refused := s.slow[sec.Name] && s.tries[sec.Name] <= s.refuse
	s.mu.Unlock()
	if refused {
		return fmt.Errorf("secretsmanager:CreateSecret on %s: %w: Rate exceeded", sec.Name, secretstore.ErrThrottled)
	}
	return s.Store.Create(ctx, sec)
}

func (s *quotaStore) Get(ctx context.Context, n []string) (map[string]string, error) {
	if len(n) == 1 {
		s.mu.Lock()
		s.read[n[0]]++
		s.mu.Unlock()
	}
	return s.Store.Get(ctx, n)
}

// The node that won the fleet's first claim in a burst under the create
// quota tries a throttled create again without reading it back (a throttled
// create was not made, and no other node makes these unless it found this
// one stalled, when the create itself says the secret exists): only
// creates, so its dozen creates follow the quota as it refills. The fleet
// it makes is whole and its own.
func TestClaimedCreatorRetriesThrottledCreatesWithoutReading(t *testing.T) {
	const refuse = 3
	st := &quotaStore{Store: storetest.NewMemoryStore(), refuse: refuse, tries: map[string]int{}, read: map[string]int{},
		slow: map[string]bool{names.CACert(): true, names.NodeCAKey(): true, names.Bundle(): true}}
	o := opts(t, st)
	o.Mode = "dir" // a fleet's node, not an embedded one (its own operator)
	res := bootstrap(t, o)
	if a := actions(res); a["CA Certificate"] != "generated" {
		t.Fatalf("the lone node did not create the fleet: %v", a)
	}
	for name := range st.slow {
		if st.tries[name] != refuse+1 || st.read[name] != 0 {
			t.Errorf("%s: %d creates and %d reads of it; want %d creates (%d refused) and no read", name, st.tries[name], st.read[name], refuse+1, refuse)
		}
	}
	vals, err := st.Store.Get(context.Background(), append(names.All(), names.Bundle()))
	if err != nil || len(vals) != len(names.All())+1 {
		t.Fatalf("the fleet holds %d of %d secrets (%v)", len(vals), len(names.All())+1, err)
	}
}

// anchoredStore reads as the awssm store does with its batch read
// throttled: an anchored read whose anchor is missing returns nothing,
// whatever else exists. It records the anchors asked for.
type anchoredStore struct {
	secretstore.Store
	mu      sync.Mutex
	anchors []string
}

func (s *anchoredStore) GetAnchored(ctx context.Context, n []string) (map[string]string, error) {
	s.mu.Lock()
	s.anchors = append(s.anchors, n[0])
	s.mu.Unlock()
	got, err := s.Store.Get(ctx, n[:1])
	if err != nil || got[n[0]] == "" {
		return map[string]string{}, err
	}
	return s.Store.Get(ctx, n)
}

// A node's first look at the store is anchored by the root certificate: in
// a burst under quotas a node that finds no fleet spends one read on it,
// not one per secret. A first node then creates the fleet (its claim
// decides, as always), and a crashed creator's claim alone (ca-key, which a
// node's read does not name) is completed by the next node as before.
func TestFirstLookIsAnchoredByTheRootCertificate(t *testing.T) {
	mem := storetest.NewMemoryStore()
	st := &anchoredStore{Store: mem}
	o := opts(t, st)
	o.Mode = "dir"
	bootstrap(t, o)
	if len(st.anchors) == 0 || st.anchors[0] != names.CACert() {
		t.Fatalf("anchored reads %v, want the first anchored by %s", st.anchors, names.CACert())
	}
	joiner := opts(t, st)
	joiner.Mode = "dir"
	if a := actions(bootstrap(t, joiner)); a["CA Certificate"] != "retrieved" {
		t.Fatalf("the second node did not join: %v", a)
	}

	// A creator that crashed right after its claim: only ca-key stored.
	crashed := storetest.NewMemoryStore()
	first := opts(t, &anchoredStore{Store: crashed})
	first.Mode = "dir"
	bootstrap(t, first) // a whole fleet, then drop all but the claim
	vals, _ := crashed.Get(context.Background(), []string{names.CAKey()})
	fresh := storetest.NewMemoryStore()
	if err := fresh.Create(context.Background(), secretstore.Secret{Name: names.CAKey(), Value: vals[names.CAKey()]}); err != nil {
		t.Fatal(err)
	}
	next := opts(t, &anchoredStore{Store: fresh})
	next.Mode = "dir"
	next.AwaitStall = 50 * time.Millisecond // the crashed creator makes no progress
	res := bootstrap(t, next)
	got, _ := fresh.Get(context.Background(), names.All())
	if len(got) != len(names.All()) || got[names.CAKey()] != vals[names.CAKey()] || actions(res)["CA Certificate"] != "completed" {
		t.Fatalf("after a creator crashed at its claim, the next node left %d of %d shared secrets (claim kept: %v); actions %v",
			len(got), len(names.All()), got[names.CAKey()] == vals[names.CAKey()], actions(res))
	}
}
