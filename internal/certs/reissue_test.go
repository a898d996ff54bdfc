package certs_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// Two operators re-issuing one role at once write the same pair; the other
// roles and the CA do not change.
func TestReissueConcurrentOperators(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	before, _ := st.Get(ctx, names.All())
	var wg sync.WaitGroup
	res := make([]*certs.Reissued, 2)
	errs := make([]error, 2)
	for i := range res {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res[i], errs[i] = (&certs.Fleet{Store: st, ClientLifetime: time.Hour}).Reissue(ctx, pki.Developer)
		}(i)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("operator %d: %v", i+1, err)
		}
	}
	// Overlapping runs write the same pair; runs that did not overlap
	// re-issue twice, the second replacing the first's certificate.
	a, b := res[0], res[1] // a: the run that finished last
	if b.OldSerial == a.NewSerial {
		a, b = b, a
	}
	overlapped := a.NewSerial == b.NewSerial && a.OldSerial == b.OldSerial
	chained := a.OldSerial == b.NewSerial
	if !overlapped && !chained {
		t.Fatalf("the operators' re-issues are unrelated: %+v %+v", res[0], res[1])
	}
	after, _ := st.Get(ctx, names.All())
	c, _ := pki.ParseCert([]byte(after[names.ClientCert(pki.Developer)]))
	k, err := pki.ParseKey([]byte(after[names.ClientKey(pki.Developer)]))
	if err != nil || pki.MatchesKey(c, k) != nil {
		t.Fatalf("the stored developer pair does not match: %v", err)
	}
	if pki.SerialHex(c.SerialNumber) != a.NewSerial {
		t.Fatalf("stored serial %s, want the last re-issue's %s", pki.SerialHex(c.SerialNumber), a.NewSerial)
	}
	for name, v := range before {
		if name != names.ClientCert(pki.Developer) && name != names.ClientKey(pki.Developer) && after[name] != v {
			t.Errorf("%s changed", name)
		}
	}
	// A bootstrap after it reads a consistent store.
	bootstrap(t, opts(t, st))
}

// failCertPut fails writing the developer's certificate: a run that
// stopped after its record and its key.
type failCertPut struct{ *storetest.MemoryStore }

func (f failCertPut) Put(ctx context.Context, name, value string) error {
	if name == names.ClientCert(pki.Developer) {
		return errors.New("connection reset")
	}
	return f.MemoryStore.Put(ctx, name, value)
}

// A re-issue interrupted after writing the key is completed by the next
// run with the same pair (from its record), not a third one.
func TestReissueInterruptedIsCompleted(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	if _, err := (&certs.Fleet{Store: failCertPut{st}, ClientLifetime: time.Hour}).Reissue(ctx, pki.Developer); err == nil {
		t.Fatal("the interrupted run reported success")
	}
	half, _ := st.Get(ctx, []string{names.ClientKey(pki.Developer)})
	res, err := (&certs.Fleet{Store: st, ClientLifetime: time.Hour}).Reissue(ctx, pki.Developer)
	if err != nil {
		t.Fatal(err)
	}
	after, _ := st.Get(ctx, []string{names.ClientCert(pki.Developer), names.ClientKey(pki.Developer)})
	if after[names.ClientKey(pki.Developer)] != half[names.ClientKey(pki.Developer)] {
		t.Fatal("the re-run wrote another key instead of completing the recorded pair")
	}
	c, _ := pki.ParseCert([]byte(after[names.ClientCert(pki.Developer)]))
	k, _ := pki.ParseKey([]byte(after[names.ClientKey(pki.Developer)]))
	if pki.MatchesKey(c, k) != nil || pki.SerialHex(c.SerialNumber) != res.NewSerial {
		t.Fatal("the completed pair does not match")
	}
	bootstrap(t, opts(t, st))
}
