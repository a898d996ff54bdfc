package certs_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Two operators re-issuing one role at once write the same pair; the other
// roles and the CA do not change.
func TestReissueConcurrentOperators(t *testing.T) {
	ctx := context.Background()
	st := secretstore.NewMemoryStore()
	bootstrap(t, opts(t, st))
	before, _ := st.Get(ctx, names.All())
	var wg sync.WaitGroup
	res := make([]*certs.Reissued, 2)
	errs := make([]error, 2)
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = certs.Reissue(ctx, st, "joblet", pki.Developer, pki.ECDSAP256, time.Hour, time.Now(), nil)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("operator %d: %v", i+1, err)
		}
	}
	if res[0].NewSerial != res[1].NewSerial || res[0].NewSerial == res[0].OldSerial {
		t.Fatalf("operators re-issued different certificates: %+v %+v", res[0], res[1])
	}
	after, _ := st.Get(ctx, names.All())
	c, _ := pki.ParseCert([]byte(after[names.ClientCert(pki.Developer)]))
	k, err := pki.ParseKey([]byte(after[names.ClientKey(pki.Developer)]))
	if err != nil || pki.MatchesKey(c, k) != nil || c.SerialNumber.Text(16) != res[0].NewSerial {
		t.Fatalf("stored developer pair: %v", err)
	}
	for name, v := range before {
		if name != names.ClientCert(pki.Developer) && name != names.ClientKey(pki.Developer) && after[name] != v {
			t.Errorf("%s changed", name)
		}
	}
	// A bootstrap after it reads a consistent store.
	bootstrap(t, opts(t, st))
}
