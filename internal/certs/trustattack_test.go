package certs_test

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

func evilCA(t *testing.T) *pki.CA {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCA(key, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}

func containsPEM(pemText string, c *x509.Certificate) bool {
	cs, _ := pki.ParseCerts([]byte(pemText))
	for _, x := range cs {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

func mustServer(t *testing.T, p string) *config.Server {
	t.Helper()
	s, err := config.LoadServer(p)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// An attack from the review of the signed trust state: an attacker with write access pre-creates the create-only
// rotation record named after the (public) current CA serial, holding a CA
// and key of their own. The operator's next `rotate-ca begin` adopts it and
// signs, with the real root key, a trust state (and a cross certificate)
// introducing the attacker's CA; every node takes it.
func TestAttackPlantedRotationRecordIsLaundered(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	v, _ := st.Get(ctx, []string{names.CACert()})
	real, _ := pki.ParseCert([]byte(v[names.CACert()]))

	evil := evilCA(t)
	keyPEM, _ := pki.EncodeKey(evil.Key)
	st.Set(names.Rotation(real.SerialNumber.Text(16)), string(keyPEM)+string(pki.EncodeCert(evil.Cert)))

	op := &certs.Fleet{Store: st, Log: o.Log}
	if _, err := op.BeginRotation(ctx, certs.CAKeyRef{}); !errors.Is(err, certs.ErrInconsistentStore) || !strings.Contains(err.Error(), "did not cross-sign") {
		t.Fatalf("begin over a planted rotation record: %v, want it refused", err)
	}
	if _, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	if containsPEM(mustServer(t, cfgPath).Security.CACert, evil.Cert) {
		t.Fatalf("LAUNDERED: the node now trusts the attacker's CA %s (key held by the attacker)", pki.Fingerprint(evil.Cert))
	}
}

// An attack from the review of the signed trust state: same through the pending labels: the attacker puts a pending
// ca-cert and ca-key; status says "a begin was interrupted: run it again".
func TestAttackPlantedPendingCAIsLaundered(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	evil := evilCA(t)
	keyPEM, _ := pki.EncodeKey(evil.Key)
	var w secretstore.Store = st
	if err := w.PutPending(ctx, names.CAKey(), string(keyPEM)); err != nil {
		t.Fatal(err)
	}
	if err := w.PutPending(ctx, names.CACert(), string(pki.EncodeCert(evil.Cert))); err != nil {
		t.Fatal(err)
	}
	op := &certs.Fleet{Store: st, Log: o.Log}
	rs, err := op.RotationStatus(ctx)
	if err == nil {
		t.Logf("status: phase %s interrupted %v next %q", rs.Phase, rs.Interrupted, rs.NextStep)
	} else {
		t.Logf("status err: %v", err)
	}
	if rep := op.Status(ctx, certs.StatusOptions{}); rep.Level == certs.OK {
		t.Fatalf("certs status says OK with a planted pending CA")
	}
	if _, err := op.BeginRotation(ctx, certs.CAKeyRef{}); !errors.Is(err, certs.ErrInconsistentStore) {
		t.Fatalf("begin over a planted pending CA: %v, want it refused", err)
	}
	if _, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	if containsPEM(mustServer(t, cfgPath).Security.CACert, evil.Cert) {
		t.Fatalf("LAUNDERED: the node now trusts the attacker's CA %s", pki.Fingerprint(evil.Cert))
	}
}

// An attack from the review of the signed trust state: SignTrustState's "vouched" accepts a cross certificate in either
// direction. The attacker's own CA signs a certificate for the real root's
// key (ca-cross) and sits as the pending ca-cert; the scheduled
// `joblet certs trust sign` then signs a state trusting it with the real key.
func TestAttackReverseCrossLaunderedByTrustSign(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	v, _ := st.Get(ctx, []string{names.CACert()})
	real, _ := pki.ParseCert([]byte(v[names.CACert()]))
	evil := evilCA(t)
	rev, err := pki.CrossSign(real, evil, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Set(names.CACross(), string(pki.EncodeCert(rev)))
	if err := st.PutPending(ctx, names.CACert(), string(pki.EncodeCert(evil.Cert))); err != nil {
		t.Fatal(err)
	}
	op := &certs.Fleet{Store: st, Log: o.Log}
	rep := op.Status(ctx, certs.StatusOptions{})
	t.Logf("status before: level %d %q", rep.Level, rep.Problems)
	res, err := op.SignTrustState(ctx)
	if err != nil {
		t.Fatalf("trust sign refused: %v", err)
	}
	t.Logf("trust sign: %+v", res)
	if _, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	if containsPEM(mustServer(t, cfgPath).Security.CACert, evil.Cert) {
		t.Fatalf("LAUNDERED by trust sign: the node trusts the attacker's CA")
	}
}

// An attack from the review of the signed trust state: after rotating away from root A (finish), the attacker puts back
// the promoted phase's state (roots A and B, genuine) and, 60 days later
// (expired), a fresh node pinned to A joins trusting A again.
func TestAttackJoinTakesExpiredPreFinishState(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	op := &certs.Fleet{Store: st, Log: o.Log}
	v, _ := st.Get(ctx, []string{names.CACert()})
	a, _ := pki.ParseCert([]byte(v[names.CACert()]))
	for _, step := range []func(context.Context) (*certs.RotationStatus, error){
		func(c context.Context) (*certs.RotationStatus, error) { return op.BeginRotation(c, certs.CAKeyRef{}) },
		op.PromoteRotation} {
		if _, err := step(ctx); err != nil {
			t.Fatal(err)
		}
	}
	pv, _ := st.Get(ctx, []string{names.Bundle()})
	promoted := pv[names.Bundle()]
	if _, err := op.FinishRotation(ctx); err != nil {
		t.Fatal(err)
	}
	st.Set(names.Bundle(), promoted)
	st.Set(names.Bundle(), promoted)
	later := time.Now().Add(60 * 24 * time.Hour)
	rep := (&certs.Fleet{Store: st, Log: o.Log, Now: func() time.Time { return later }}).Status(ctx, certs.StatusOptions{})
	t.Logf("status: level %d %q", rep.Level, rep.Problems)
	o2 := opts(t, st)
	p := pki.PinOf(a)
	o2.Fleet.Pin = &p
	o2.Fleet.Now = func() time.Time { return later }
	if _, err := boot(ctx, o2); err != nil {
		t.Logf("join refused: %v", err)
		return
	}
	srv := mustServer(t, filepath.Join(o2.Home, "config", "joblet-config.yml"))
	if containsPEM(srv.Security.CACert, a) {
		t.Fatalf("ROLLBACK: a node joining 60 days after finish (state expired) trusts the retired root A %s", pki.Fingerprint(a))
	}
}

// An attack from the review of the signed trust state: signTrust takes minCrl from the store's CRL without verifying it.
// The attacker writes a CRL of their own with a huge number; the scheduled
// `certs trust sign` (or any rotation step, node-ca, revoke) signs that
// number into the state: every node then refuses every call, for good.
func TestAttackForgedCRLNumberSignedIntoMinCRL(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	op := &certs.Fleet{Store: st, Log: o.Log}
	if _, err := op.Revoke(ctx, big.NewInt(0x42), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	evil := evilCA(t)
	huge := new(big.Int).Lsh(big.NewInt(1), 150)
	forged, err := evil.NewCRL(nil, huge, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	st.Set(names.CRL(), string(forged))
	later := &certs.Fleet{Store: st, Log: o.Log, Now: func() time.Time { return time.Now().Add(20 * 24 * time.Hour) }}
	res, err := later.SignTrustState(ctx)
	t.Logf("trust sign: %+v err %v", res, err)
	cur, _ := st.Get(ctx, []string{names.Bundle()})
	ts, _ := pki.PeekTrust([]byte(cur[names.Bundle()]), names.Prefix)
	t.Logf("store state v%d minCrl %v", ts.Version, ts.MinCRL)
	rr, err := later.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	t.Logf("node refresh: crlProblem %q err %v", func() string {
		if rr == nil {
			return ""
		}
		return rr.CRLProblem
	}(), err)
	// The operator notices and revokes: does that fix it?
	_, rerr := later.Revoke(ctx, big.NewInt(0x43), 1)
	t.Logf("revoke after: %v", rerr)
	if ts.MinCRL != nil && ts.MinCRL.Cmp(huge) == 0 {
		t.Fatalf("DOS: the root signed minCrl %v taken from a forged CRL", huge)
	}
}
