package certs_test

import (
	"context"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
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
	mem := secretstore.NewMemoryStore()
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
