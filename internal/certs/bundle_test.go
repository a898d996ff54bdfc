package certs_test

import (
	"context"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// An unusable ca-bundle does not block a revoke (root key and CRL only)
// nor a node's refresh (it renews, takes the CRL, keeps its trust and
// reports the bundle); flows that change trust still refuse it.
func TestUnusableBundleBlocksNeitherRevokeNorRefresh(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	before, err := config.LoadServer(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, names.Bundle(), "garbage"); err != nil {
		t.Fatal(err)
	}
	fl := &o.Fleet
	if _, err := fl.Revoke(ctx, big.NewInt(0x1234), pki.RevocationReasons["keyCompromise"]); err != nil {
		t.Fatalf("revoke with an unusable bundle: %v", err)
	}
	res, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Force: true})
	if err != nil {
		t.Fatalf("refresh with an unusable bundle: %v", err)
	}
	if !res.Renewed || !strings.Contains(res.TrustProblem, names.Bundle()) || !strings.Contains(res.TrustProblem, "keeping the trust state held") {
		t.Fatalf("refresh result %+v", res)
	}
	after, _ := config.LoadServer(cfgPath)
	if after.Security.CACert != before.Security.CACert {
		t.Fatal("the node's trust changed")
	}
	if crl, err := pki.ParseCRLUnverified([]byte(after.Security.CRL)); err != nil || len(crl.RevokedCertificateEntries) != 1 {
		t.Fatalf("the node did not take the new CRL: %v", err)
	}
	// Rotating trust from an unusable bundle is still refused.
	if _, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); !errors.Is(err, certs.ErrInconsistentStore) {
		t.Fatalf("a rotation over an unusable bundle: %v", err)
	}
}
