package certs_test

import (
	"context"
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

func trustOf(t *testing.T, st secretstore.Store) []*x509.Certificate {
	t.Helper()
	v, _ := st.Get(context.Background(), []string{names.Bundle(), names.CACert()})
	b := v[names.Bundle()]
	if b == "" {
		b = v[names.CACert()]
	}
	c, err := pki.ParseCerts([]byte(b))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRotationPhases(t *testing.T) {
	ctx := context.Background()
	st := secretstore.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	r := &certs.Rotation{Store: st}
	step := func(name string, f func(context.Context) (*certs.RotationStatus, error), phase string) *certs.RotationStatus {
		t.Helper()
		for i := 0; i < 2; i++ { // every step is idempotent
			s, err := f(ctx)
			if err != nil {
				t.Fatalf("%s (run %d): %v", name, i+1, err)
			}
			if s.Phase != phase {
				t.Fatalf("%s: phase %s, want %s", name, s.Phase, phase)
			}
		}
		s, _ := r.Status(ctx)
		return s
	}
	before := step("status", r.Status, certs.PhaseStable)
	oldClients, _ := st.Get(ctx, names.All())

	begun := step("begin", r.Begin, certs.PhaseBegun)
	if begun.Current.Fingerprint != before.Current.Fingerprint || begun.Pending == nil || len(trustOf(t, st)) != 2 {
		t.Fatalf("begin: %+v", begun)
	}
	// A node refreshes: it trusts both, keeps its certificate.
	res, err := certs.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Store: st})
	if err != nil || !res.TrustChanged || res.Renewed || len(res.Trust) != 2 {
		t.Fatalf("refresh after begin: %+v %v", res, err)
	}

	promoted := step("promote", r.Promote, certs.PhasePromoted)
	if promoted.Current.Fingerprint != begun.Pending.Fingerprint {
		t.Fatal("promote did not make the pending CA current")
	}
	for role, issuer := range promoted.Clients {
		if issuer != "current" {
			t.Errorf("%s client certificate not re-issued: %s", role, issuer)
		}
	}
	newClients, _ := st.Get(ctx, names.All())
	for _, role := range pki.Roles {
		if newClients[names.ClientKey(role)] != oldClients[names.ClientKey(role)] {
			t.Errorf("%s key changed: promote re-issues certificates for the same key", role)
		}
	}
	res, err = certs.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Store: st})
	if err != nil || !res.Renewed || res.Reason != "it is not signed by the current CA" {
		t.Fatalf("refresh after promote: %+v %v", res, err)
	}
	// A node bootstrapping mid-rotation accepts the old client certificates
	// (they chain to a trusted CA) and trusts both.
	mid := bootstrap(t, opts(t, st))
	if len(mid.Items) != 6 {
		t.Fatalf("%+v", mid)
	}

	step("finish", r.Finish, certs.PhaseStable)
	trust := trustOf(t, st)
	if len(trust) != 1 || fingerprintOf(trust[0]) != promoted.Current.Fingerprint {
		t.Fatal("finish should leave the new CA alone in the trust bundle")
	}
	res, err = certs.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Store: st})
	if err != nil || !res.TrustChanged || res.Renewed {
		t.Fatalf("refresh after finish: %+v %v", res, err)
	}
	srv, _ := config.LoadServer(cfgPath)
	leaf, _ := pki.ParseCert([]byte(srv.Security.ServerCert))
	if err := pki.VerifyLeaf(leaf, trust, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Fatal(err)
	}
	old, _ := pki.ParseCert([]byte(oldClients[names.ClientCert(pki.Admin)]))
	if pki.VerifyLeaf(old, trust, x509.ExtKeyUsageClientAuth, time.Now()) == nil {
		t.Fatal("an old client certificate still verifies after finish")
	}
}

func TestRotationAbort(t *testing.T) {
	ctx := context.Background()
	st := secretstore.NewMemoryStore()
	bootstrap(t, opts(t, st))
	r := &certs.Rotation{Store: st}
	orig, _ := r.Status(ctx)

	if _, err := r.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	s, err := r.Abort(ctx)
	if err != nil || s.Phase != certs.PhaseStable || s.Current.Fingerprint != orig.Current.Fingerprint || len(trustOf(t, st)) != 1 {
		t.Fatalf("abort from begun: %+v %v", s, err)
	}

	r.Begin(ctx)
	r.Promote(ctx)
	s, err = r.Abort(ctx)
	if err != nil || s.Phase != certs.PhaseBegun || s.Current.Fingerprint != orig.Current.Fingerprint || len(trustOf(t, st)) != 2 {
		t.Fatalf("abort from promoted: %+v %v", s, err)
	}
	for role, issuer := range s.Clients {
		if issuer != "current" {
			t.Errorf("%s not re-issued from the old CA", role)
		}
	}
	s, err = r.Abort(ctx)
	if err != nil || s.Phase != certs.PhaseStable || len(trustOf(t, st)) != 1 {
		t.Fatalf("second abort: %+v %v", s, err)
	}
	if _, err := r.Abort(ctx); err == nil {
		t.Fatal("abort with no rotation should say so")
	}
}

func fingerprintOf(c *x509.Certificate) string {
	return certs.Fingerprint(c)
}
