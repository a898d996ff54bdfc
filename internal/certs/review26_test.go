package certs_test

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// Attacker review of issue 26: someone who can write to the store but has
// no root key puts back an older identity policy the root signed (one
// from before mallory was removed and denied; policies live 30 days). The
// issuer reads the current version with nothing held and takes it, and a
// node that joins after the write takes it at its first refresh (the
// history walk covers the trust state and the CRL only): mallory logs in
// as admin again and is accepted by every node that joined since.
// "Removing a person from the policy stops their next login" holds only
// until an older policy is put back.
func TestReview26OlderIdentityPolicyPutBack(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	fl := &certs.Fleet{Store: st, StoreDesc: "test store", Log: o.Fleet.Log}
	mallory := "arn:aws:iam::111122223333:user/mallory"
	if _, err := fl.SignIdentityPolicy(ctx, &idpolicy.Policy{Rules: []idpolicy.Rule{{User: mallory, Grant: pki.Admin}}}, 0); err != nil {
		t.Fatal(err)
	}
	old, _ := st.Get(ctx, []string{"joblet/identity-policy"})
	if _, err := fl.MakeUserCA(ctx, false, 0, pki.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.SignIdentityPolicy(ctx, &idpolicy.Policy{Deny: []string{mallory},
		Rules: []idpolicy.Rule{{User: "arn:aws:iam::111122223333:user/alice", Grant: pki.Developer}}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := st.Put(ctx, "joblet/identity-policy", old["joblet/identity-policy"]); err != nil {
		t.Fatal(err)
	}
	p, err := idpolicy.Canonical(mallory)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := fl.IssuerMaterial(ctx); err == nil {
		if got, err := m.Policy.Map(p, "AIDAMALLORY"); !errors.Is(err, idpolicy.ErrUnmapped) {
			t.Errorf("the issuer maps mallory to %s under the older policy put back (version %d)", got.Role, m.Policy.Version)
		}
	}
	// A node joining after the write.
	o2 := opts(t, st)
	bootstrap(t, o2)
	cfgPath := filepath.Join(o2.Home, "config", "joblet-config.yml")
	if _, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadServer(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Security.IdentityPolicy == old["joblet/identity-policy"] {
		t.Errorf("a node joining after the older policy was put back holds it (mallory, admin)")
	}
}

// Attacker review of issue 26: `joblet issuer --ca-fingerprint` checks
// only that the pinned root is among the roots the store's trust state
// lists, and that state verifies from the store's own ca-cert. Someone
// who writes to the store without the root key replaces ca-cert with a
// root of their own and the trust state with one it signed listing both
// roots: the pin is still "among" them, and the pinned issuer takes an
// identity policy the writer's root signed. (The store path's checkPin
// verifies the trust state from the pinned root alone.)
func TestReview26PinnedIssuerTakesAnotherRootsPolicy(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	fl := &certs.Fleet{Store: st, StoreDesc: "test store", Log: o.Fleet.Log}
	if _, err := fl.SignIdentityPolicy(ctx, &idpolicy.Policy{Rules: []idpolicy.Rule{{User: "arn:aws:iam::111122223333:user/alice", Grant: pki.Developer}}}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.MakeUserCA(ctx, false, 0, pki.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	vals, _ := st.Get(ctx, []string{"joblet/ca-cert"})
	real, err := pki.ParseCert([]byte(vals["joblet/ca-cert"]))
	if err != nil {
		t.Fatal(err)
	}
	pin := pki.PinOf(real)
	pinned := &certs.Fleet{Store: st, StoreDesc: "test store", Log: o.Fleet.Log, Pin: &pin}
	if _, err := pinned.IssuerMaterial(ctx); err != nil {
		t.Fatalf("the pinned issuer before the write: %v", err)
	}

	// The writer's root, a trust state it signed listing both, a policy
	// it signed giving mallory admin.
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	ec, err := pki.NewCA(k, time.Now().Add(-time.Minute), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	evil := &pki.CA{Cert: ec, Key: k}
	state, err := pki.SignTrust(ctx, pki.NewTrustState("joblet", uint64(time.Now().Unix()+1000), []*x509.Certificate{real, ec}, nil, nil, time.Now()), evil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	mallory := "arn:aws:iam::111122223333:user/mallory"
	pol := &idpolicy.Policy{Fleet: "joblet", Version: uint64(now.Unix() + 1000), Issued: now, Expires: now.Add(time.Hour),
		Rules: []idpolicy.Rule{{User: mallory, Grant: pki.Admin}}}
	signed, err := idpolicy.Sign(ctx, pol, evil)
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]string{"joblet/ca-cert": string(pki.EncodeCert(ec)), "joblet/ca-bundle": string(state), "joblet/identity-policy": string(signed)} {
		if err := st.Put(ctx, name, v); err != nil {
			t.Fatal(err)
		}
	}
	m, err := pinned.IssuerMaterial(ctx)
	if err != nil {
		return // refused: fine
	}
	p, _ := idpolicy.Canonical(mallory)
	if got, err := m.Policy.Map(p, "AIDAMALLORY"); err == nil {
		t.Errorf("the issuer pinned to %s maps mallory to %s by a policy another root signed", pin, got.Role)
	}
}

// Found in the last read of the change: a rotation step re-issued
// whatever key <prefix>/user-ca held under the new root. Someone who
// writes to the store without the root key plants a key of their own
// there (with any certificate); the next `rotate-ca promote` certified it,
// handing them a user-issuing CA. Only a user-issuing CA that chains to a
// root the fleet trusts is re-issued.
func TestReview26RotationCertifiesNoPlantedUserCAKey(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	fl := &certs.Fleet{Store: st, StoreDesc: "test store", Log: o.Fleet.Log}
	if _, err := fl.MakeUserCA(ctx, false, 0, pki.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	evil, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	evilCert, err := pki.NewCA(evil, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	evilPEM, _ := pki.EncodeKey(evil)
	if err := st.Put(ctx, "joblet/user-ca", string(pki.EncodeCert(evilCert))+string(evilPEM)); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.PromoteRotation(ctx); err != nil {
		t.Fatal(err)
	}
	vals, _ := st.Get(ctx, []string{"joblet/user-ca"})
	certPEM, _ := pki.SplitPEM([]byte(vals["joblet/user-ca"]))
	if c, err := pki.ParseCert(certPEM); err == nil && pki.SameKey(c, evilCert) && c.CheckSignature(c.SignatureAlgorithm, c.RawTBSCertificate, c.Signature) != nil {
		t.Fatalf("the rotation certified the planted user-issuing CA key (issuer %q)", c.Issuer.CommonName)
	}
}
