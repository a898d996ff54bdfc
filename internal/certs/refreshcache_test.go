package certs_test

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// countingStore counts the store calls a flow makes.
type countingStore struct {
	secretstore.Store
	gets, versions atomic.Int32
}

func (c *countingStore) Get(ctx context.Context, names []string) (map[string]string, error) {
	c.gets.Add(1)
	return c.Store.Get(ctx, names)
}

func (c *countingStore) Versions(ctx context.Context, names []string) (map[string]string, error) {
	c.versions.Add(1)
	return c.Store.Versions(ctx, names)
}

// A running node's refresh costs one store call when nothing changed, and
// reads again as soon as something it watches did (a revocation) or its
// own config changed.
func TestRefreshIsOneCallWhenNothingChanged(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemoryStore()
	o := opts(t, mem)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	st := &countingStore{Store: mem}
	fl := &certs.Fleet{Store: st}
	cache := &certs.RefreshCache{}
	refresh := func(what string, wantGets, wantVersions int32) *certs.NodeRefreshResult {
		t.Helper()
		st.gets.Store(0)
		st.versions.Store(0)
		res, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Cache: cache})
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if g, v := st.gets.Load(), st.versions.Load(); g != wantGets || v != wantVersions {
			t.Fatalf("%s: %d reads and %d version checks, want %d and %d", what, g, v, wantGets, wantVersions)
		}
		return res
	}
	first := refresh("first refresh", 1, 1)
	for i := 0; i < 3; i++ {
		if res := refresh("refresh at rest", 0, 1); res.Serial != first.Serial || len(res.Trust) != 1 {
			t.Fatalf("refresh at rest reported %+v, first %+v", res, first)
		}
	}
	// This node's own certificate revoked: the CRL changed, so it reads and renews.
	serial, _ := pki.ParseSerial(first.Serial)
	if _, err := fl.Revoke(ctx, serial, 1); err != nil {
		t.Fatal(err)
	}
	if res := refresh("after a revocation", 1, 1); !res.Renewed {
		t.Fatalf("the revoked server certificate was not renewed: %+v", res)
	}
	refresh("at rest again", 0, 1)
	// A re-bootstrap rewrote the config: read again.
	bootstrap(t, o)
	refresh("after the config changed", 1, 1)
}

// slowStore counts every call and gives each the round trip of a remote
// store, so a burst of first nodes overlaps the way it does against AWS.
type slowStore struct {
	secretstore.Store
	creates, reads atomic.Int32
}

func (s *slowStore) pause() { time.Sleep(3 * time.Millisecond) }

func (s *slowStore) Get(ctx context.Context, names []string) (map[string]string, error) {
	s.reads.Add(1)
	s.pause()
	return s.Store.Get(ctx, names)
}

func (s *slowStore) Create(ctx context.Context, sec secretstore.Secret) error {
	s.creates.Add(1)
	s.pause()
	return s.Store.Create(ctx, sec)
}

// A burst of first nodes against an empty store: the node that wins the
// first claim creates the fleet; every other node makes that one create,
// then waits and reads, instead of racing for every secret. One CA.
func TestBurstLosersStopCreating(t *testing.T) {
	const nodes = 20
	st := &slowStore{Store: storetest.NewMemoryStore()}
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	for i := 0; i < nodes; i++ {
		o := opts(t, st)
		o.AwaitFirst = 50 * time.Millisecond
		wg.Add(1)
		go func(i int) { defer wg.Done(); _, errs[i] = boot(context.Background(), o) }(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
	}
	// The winner's secrets, and at most one lost claim per other node (a
	// node that starts after the fleet is complete creates nothing).
	least := int32(len(names0()))
	most := least + nodes - 1
	if c := st.creates.Load(); c > most || c < least {
		t.Fatalf("%d creates for %d nodes, want %d to %d: losers kept racing", c, nodes, least, most)
	}
	perNode := float64(st.creates.Load()+st.reads.Load()) / nodes
	if perNode > 5 {
		t.Fatalf("%.1f store calls per node (%d creates, %d reads)", perNode, st.creates.Load(), st.reads.Load())
	}
	t.Logf("%d nodes at once: %.2f store calls per node (%d creates, %d reads)", nodes, perNode, st.creates.Load(), st.reads.Load())
}
