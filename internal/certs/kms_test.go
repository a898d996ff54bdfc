package certs_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

func kmsOpts(t *testing.T, st secretstore.Store, open certs.KMSOpener, arn string) bootOpts {
	o := opts(t, st)
	o.CAKey, o.OpenKMS = certs.KMSKeyRef(arn, o.KMSRegion), open
	return o
}

// KMS mode at the store level: concurrent first nodes agree on one CA
// certificate for the KMS key, ca-key is never written, FORCE_REGENERATE
// keeps it so, and export refuses to take a KMS CA off AWS.
func TestKMSModeBootstrap(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	open := kmsOpener(t, "arn:k1")
	var wg sync.WaitGroup
	results := make([]*certs.Result, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i], errs[i] = boot(ctx, kmsOpts(t, st, open, "arn:k1"))
		}(i)
	}
	wg.Wait()
	ca := ""
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		fp := fingerprint(results[i], "CA Certificate")
		if ca == "" {
			ca = fp
		}
		if fp != ca || results[i].CAKMSKey != "arn:k1" {
			t.Fatalf("node %d: CA %s (KMS %q), others %s", i, fp, results[i].CAKMSKey, ca)
		}
	}
	vals, _ := st.Get(ctx, append(names.All(), names.CAKMSKey()))
	if _, ok := vals[names.CAKey()]; ok {
		t.Fatal("KMS mode wrote ca-key")
	}
	if vals[names.CAKMSKey()] != "arn:k1" {
		t.Fatalf("ca-kms-key %q", vals[names.CAKMSKey()])
	}

	o := kmsOpts(t, st, open, "arn:k1")
	o.Force = true
	res := bootstrap(t, o)
	if fingerprint(res, "CA Certificate") == ca {
		t.Fatal("FORCE_REGENERATE kept the CA certificate")
	}
	if v, _ := st.Get(ctx, []string{names.CAKey()}); len(v) != 0 {
		t.Fatal("FORCE_REGENERATE in KMS mode wrote ca-key")
	}

	err := (&certs.Fleet{Store: st}).Export(ctx, storetest.NewMemoryStore(), false)
	if !errors.Is(err, certs.ErrCAMode) || !strings.Contains(err.Error(), "cannot leave it") {
		t.Fatalf("export of a KMS CA: %v", err)
	}
	// A node without the KMS key is told which one to set.
	_, err = boot(ctx, opts(t, st))
	if !errors.Is(err, certs.ErrCAMode) || !strings.Contains(err.Error(), "JOBLET_CA_KMS_KEY_ID=arn:k1") {
		t.Fatalf("node without the KMS key: %v", err)
	}
}
