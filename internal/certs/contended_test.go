package certs_test

import (
	"context"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// contendedStore is a store that has throttled this process already (as
// the awssm store reports once Secrets Manager throttled a call past the
// client's retries: a burst under AWS's quotas). It holds the creator's
// second create (the root's certificate) until release is closed, so the
// burst's other nodes arrive while the fleet is being created.
type contendedStore struct {
	secretstore.Store
	release     chan struct{}
	creates     atomic.Int32
	mu          sync.Mutex
	read        map[string]int // single-secret reads, by name
	wholeReads  int            // reads of more than one secret
	readsOfKeys int            // reads that name a role key (not the claim, ca-key, nor what a node reads)
}

func (s *contendedStore) Throttled() bool { return true }

func (s *contendedStore) Create(ctx context.Context, sec secretstore.Secret) error {
	s.creates.Add(1)
	if sec.Name == names.CACert() {
		<-s.release
	}
	return s.Store.Create(ctx, sec)
}

func (s *contendedStore) Get(ctx context.Context, n []string) (map[string]string, error) {
	s.mu.Lock()
	if len(n) == 1 {
		s.read[n[0]]++
	} else {
		s.wholeReads++
	}
	for _, name := range n {
		if name != names.CAKey() && name != names.NodeCAKey() && strings.Contains(name, "client-key") {
			s.readsOfKeys++
		}
	}
	s.mu.Unlock()
	return s.Store.Get(ctx, n)
}

// A burst under quotas (the store has throttled the nodes already): the
// nodes that arrive while the first one creates the fleet read its claim
// instead of creating it (no create spent on the claim: under Secrets
// Manager's create quota theirs would delay the creator's), wait reading
// single secrets, and join the finished fleet with the join's read: one CA,
// no create but the creator's, no loser reading the roles' keys, and every
// node holding the fleet's signed trust state.
func TestContendedBurstLosersReadInsteadOfCreating(t *testing.T) {
	st := &contendedStore{Store: storetest.NewMemoryStore(), release: make(chan struct{}), read: map[string]int{}}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	first := opts(t, st)
	first.Mode = "dir" // a fleet's node, not an embedded one (its own operator, which never joins)
	firstDone := make(chan error, 1)
	go func() { _, err := boot(ctx, first); firstDone <- err }()
	// The creator holds the claim (its ca-key is stored) once it waits on
	// its second create.
	for st.creates.Load() < 2 {
		time.Sleep(5 * time.Millisecond)
	}
	const losers = 8
	homes := make([]string, losers)
	errs := make(chan error, losers)
	var wg sync.WaitGroup
	for i := range losers {
		o := opts(t, st)
		o.Mode = "dir"
		homes[i] = o.Home
		wg.Add(1)
		go func() { defer wg.Done(); _, err := boot(ctx, o); errs <- err }()
	}
	time.Sleep(300 * time.Millisecond) // the losers wait
	close(st.release)
	wg.Wait()
	close(errs)
	if err := <-firstDone; err != nil {
		t.Fatalf("the creating node: %v", err)
	}
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if c, want := st.creates.Load(), int32(len(names0())); c != want {
		t.Fatalf("%d creates, want the creator's %d only", c, want)
	}
	if st.readsOfKeys != 0 {
		t.Fatalf("%d reads named a private key besides the claim: a node that waited should join with what a node reads", st.readsOfKeys)
	}
	ca := ""
	for _, h := range homes {
		cfg, err := config.LoadServer(filepath.Join(h, "config", "joblet-config.yml"))
		if err != nil {
			t.Fatal(err)
		}
		if cfg.Security.TrustState == "" {
			t.Fatalf("%s holds no signed trust state", h)
		}
		if ca != "" && cfg.Security.CACert != ca {
			t.Fatal("the nodes trust different CAs")
		}
		ca = cfg.Security.CACert
		if keys, _ := privateKeys(t, h); keys != 1 {
			t.Fatalf("%s holds %d private keys, want its own only", h, keys)
		}
	}
	t.Logf("%d nodes: %d creates, %d whole reads, single reads %v", losers+1, st.creates.Load(), st.wholeReads, st.read)
}
