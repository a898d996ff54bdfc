package certs_test

import (
	"context"
	"crypto/x509"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// attackerCA is a CA of the attacker's own, with its trust state listing
// it (and the real root, to look plausible), signed by itself.
func attackerState(t *testing.T, real *x509.Certificate, version uint64) (*pki.CA, string) {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCA(key, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	evil := &pki.CA{Cert: cert, Key: key}
	doc, err := pki.SignTrust(context.Background(), pki.NewTrustState(names.Prefix, version, []*x509.Certificate{evil.Cert, real}, []*x509.Certificate{evil.Cert}, nil, time.Now()), evil)
	if err != nil {
		t.Fatal(err)
	}
	return evil, string(doc)
}

// Every write an attacker without the root key can make to ca-bundle
// (a PEM bundle with their CA, a state they signed, an older state of the
// fleet put back, a deletion, junk) changes neither a node's trust nor a
// client's, and each is reported.
func TestWritesWithoutTheRootKeyChangeNoTrust(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	rnxPath := filepath.Join(o.Home, "config", "rnx-config.yml")
	op := &certs.Fleet{Store: st, Log: o.Log}
	// A revoke signs a newer state: the first one is then "an older
	// version of the fleet's own".
	v, _ := st.Get(ctx, []string{names.Bundle(), names.CACert()})
	older := v[names.Bundle()]
	real, _ := pki.ParseCert([]byte(v[names.CACert()]))
	if _, err := op.Revoke(ctx, big.NewInt(0x77), 1); err != nil {
		t.Fatal(err)
	}
	refresh := func() {
		t.Helper()
		if _, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
			t.Fatal(err)
		}
		if _, err := op.RefreshClientConfig(ctx, rnxPath, ""); err != nil {
			t.Fatal(err)
		}
	}
	refresh()
	before, err := config.LoadServer(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if before.Security.TrustState == "" {
		t.Fatal("the node holds no signed trust state")
	}
	_, forged := attackerState(t, real, 1<<40)
	evil, _ := attackerState(t, real, 1)
	heldDoc, _ := pki.PeekTrust([]byte(before.Security.TrustState), names.Prefix)
	_, sameVersion := attackerState(t, real, heldDoc.Version)
	cases := map[string]func(){
		"a PEM bundle with a foreign CA": func() { st.Set(names.Bundle(), string(pki.EncodeCerts(evil.Cert, real))) },
		"a state the attacker signed":    func() { st.Set(names.Bundle(), forged) },
		"one with the held version":      func() { st.Set(names.Bundle(), sameVersion) },
		"the fleet's older state":        func() { st.Set(names.Bundle(), older) },
		"a deletion":                     func() { st.Delete(names.Bundle()) },
		"junk":                           func() { st.Set(names.Bundle(), "{not json") },
	}
	good, _ := st.Get(ctx, []string{names.Bundle()})
	for what, write := range cases {
		write()
		// Twice: what one refresh keeps must not become what the next
		// one trusts.
		if _, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Force: true}); err != nil {
			t.Fatalf("%s: the node's refresh failed: %v", what, err)
		}
		res, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Force: true})
		if err != nil {
			t.Fatalf("%s: the node's refresh failed: %v", what, err)
		}
		if res.TrustProblem == "" {
			t.Errorf("%s: the node's refresh reported nothing", what)
		}
		if _, err := op.RefreshClientConfig(ctx, rnxPath, ""); err != nil {
			t.Fatalf("%s: the client's refresh failed: %v", what, err)
		}
		cref, err := op.RefreshClientConfig(ctx, rnxPath, "")
		if err != nil {
			t.Fatalf("%s: the client's refresh failed: %v", what, err)
		}
		if len(cref.Problems) == 0 {
			t.Errorf("%s: the client's refresh reported nothing", what)
		}
		rep := op.Status(ctx, certs.StatusOptions{})
		if rep.Level == certs.OK || !strings.Contains(strings.Join(rep.Problems, "\n"), names.Bundle()) {
			t.Errorf("%s: status level %d, problems %q: want it named", what, rep.Level, rep.Problems)
		}
		after, _ := config.LoadServer(cfgPath)
		if after.Security.CACert != before.Security.CACert || after.Security.TrustState != before.Security.TrustState {
			t.Fatalf("%s: the node's trust changed", what)
		}
		rnx, _ := config.LoadRnx(rnxPath)
		for name, n := range rnx.Nodes {
			if strings.Contains(n.CA, string(pki.EncodeCert(evil.Cert))) || !pki.SameCertSet(n.CA, []*x509.Certificate{real}) {
				t.Fatalf("%s: client entry %s trusts another set of CAs", what, name)
			}
		}
		st.Set(names.Bundle(), good[names.Bundle()])
	}
	// The operator's next signing step puts the real state back.
	if _, err := op.Revoke(ctx, big.NewInt(0x78), 1); err != nil {
		t.Fatal(err)
	}
	res, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	if err != nil || res.TrustProblem != "" {
		t.Fatalf("after the operator signed again: %+v %v", res, err)
	}
	if rep := op.Status(ctx, certs.StatusOptions{}); rep.Level != certs.OK {
		t.Fatalf("status after the operator signed again: %q", rep.Problems)
	}
}

// A fleet from before the signed trust state (a PEM bundle, nodes holding
// PEM trust) moves with one command: a CA in the old bundle that no key of
// the fleet vouches for is dropped, and a node from before takes the state
// from the CA it trusts.
func TestSignTrustStateMovesAFleet(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	v, _ := st.Get(ctx, []string{names.CACert()})
	real, _ := pki.ParseCert([]byte(v[names.CACert()]))
	evil, _ := attackerState(t, real, 1)
	// Before the change: the bundle a PEM list (here with a CA someone
	// slipped in), the node's config without a state.
	st.Set(names.Bundle(), string(pki.EncodeCerts(real, evil.Cert)))
	cfg, err := config.LoadServer(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Security.TrustState = ""
	b, _ := cfg.Marshal()
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}

	op := &certs.Fleet{Store: st, Log: o.Log}
	res, err := op.SignTrustState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Signed || len(res.Roots) != 1 || len(res.Dropped) != 1 || res.Dropped[0].Fingerprint != pki.Fingerprint(evil.Cert) {
		t.Fatalf("sign: %+v", res)
	}
	again, err := op.SignTrustState(ctx)
	if err != nil || again.Signed || again.Version != res.Version {
		t.Fatalf("a second run signed again: %+v %v", again, err)
	}
	ref, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	if err != nil || ref.TrustProblem != "" || !ref.TrustChanged {
		t.Fatalf("the node's refresh: %+v %v", ref, err)
	}
	after, _ := config.LoadServer(cfgPath)
	if after.Security.TrustState == "" || !pki.SameCertSet(after.Security.CACert, []*x509.Certificate{real}) {
		t.Fatal("the node did not move onto the signed state, or still trusts the slipped-in CA")
	}
	// Half-way to its expiry, the scheduled run signs it again.
	later := &certs.Fleet{Store: st, Log: o.Log, Now: func() time.Time { return time.Now().Add(pki.TrustLifetime/2 + time.Hour) }}
	due, err := later.SignTrustState(ctx)
	if err != nil || !due.Signed || due.Version <= res.Version {
		t.Fatalf("the scheduled run when due: %+v %v", due, err)
	}
}

// A node that joins after the CRL secret was deleted learns from the
// signed state that a CRL exists and says it must not serve.
func TestFreshNodeKnowsTheCRLItLacks(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	op := &certs.Fleet{Store: st}
	if _, err := op.Revoke(ctx, big.NewInt(0x99), 1); err != nil {
		t.Fatal(err)
	}
	st.Delete(names.CRL())
	o := opts(t, st)
	bootstrap(t, o)
	cfg, err := config.LoadServer(filepath.Join(o.Home, "config", "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	ts, err := pki.PeekTrust([]byte(cfg.Security.TrustState), names.Prefix)
	if err != nil || ts.MinCRL == nil || cfg.Security.CRL != "" {
		t.Fatalf("the fresh node's state names no CRL (%v) or it holds one", err)
	}
	res, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: filepath.Join(o.Home, "config", "joblet-config.yml"), Force: true})
	if err != nil || !strings.Contains(res.CRLProblem, "refuses every call") {
		t.Fatalf("refresh: %+v %v", res, err)
	}
}

// A re-key lists the new node-issuing CA beside the one it replaced (nodes
// still serve from it while they renew); once the old serial is revoked,
// the next state lists only the new one, and a client holding it refuses a
// server chain through the old key.
func TestTrustStateListsServingNodeCAs(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	op := &certs.Fleet{Store: st}
	listed := func() *pki.TrustState {
		v, _ := st.Get(ctx, []string{names.Bundle()})
		ts, err := pki.PeekTrust([]byte(v[names.Bundle()]), names.Prefix)
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	first := listed().NodeCACerts()
	if len(first) != 1 {
		t.Fatalf("a new fleet's state lists %d node-issuing CAs, want 1", len(first))
	}
	res, err := op.RekeyNodeCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	both := listed()
	if len(both.NodeCACerts()) != 2 {
		t.Fatalf("after a re-key the state lists %d node-issuing CAs, want the new and the replaced", len(both.NodeCACerts()))
	}
	serial, _ := pki.ParseSerial(res.Replaced.Serial)
	if _, err := op.Revoke(ctx, serial, 1); err != nil {
		t.Fatal(err)
	}
	after := listed()
	if len(after.NodeCACerts()) != 1 || after.NodeCACerts()[0].Equal(first[0]) {
		t.Fatalf("after revoking the replaced one the state lists %d (the old one included: %v)", len(after.NodeCACerts()), len(after.NodeCACerts()) > 0 && after.NodeCACerts()[0].Equal(first[0]))
	}
	// A chain through the old node-issuing key: leaf, old node CA, root.
	v, _ := st.Get(ctx, []string{names.CACert()})
	root, _ := pki.ParseCert([]byte(v[names.CACert()]))
	leaf := &x509.Certificate{Raw: []byte("leaf")}
	if after.AllowsServerChain([]*x509.Certificate{leaf, first[0], root}) {
		t.Fatal("the state allows a chain through the replaced node-issuing CA")
	}
	if !after.AllowsServerChain([]*x509.Certificate{leaf, after.NodeCACerts()[0], root}) || !both.AllowsServerChain([]*x509.Certificate{leaf, first[0], root}) {
		t.Fatal("the state refuses a chain through a node-issuing CA it lists")
	}
}

// One write without the root key to ca-cert or node-ca-cert (junk) stopped
// every node's refresh, so no node took a revocation made after it. A node
// that holds a signed trust state now takes the newer CRL and state anyway;
// only its renewal waits, and it says why.
func TestBrokenCAStillLetsNodesTakeTheCRL(t *testing.T) {
	for _, secret := range []string{names.CACert(), names.NodeCACert()} {
		t.Run(secret, func(t *testing.T) {
			ctx := context.Background()
			st := storetest.NewMemoryStore()
			o := opts(t, st)
			bootstrap(t, o)
			path := filepath.Join(o.Home, "config", "joblet-config.yml")
			op := &certs.Fleet{Store: st}
			if _, err := op.Revoke(ctx, big.NewInt(0x4242), 1); err != nil {
				t.Fatal(err)
			}
			st.Set(secret, "junk")
			res, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: path})
			if err != nil {
				t.Fatalf("refresh with junk in %s: %v", secret, err)
			}
			if !strings.Contains(res.RenewProblem, secret) || res.Renewed {
				t.Fatalf("refresh with junk in %s: renewed %v, problem %q, want the problem named and no renewal", secret, res.Renewed, res.RenewProblem)
			}
			cfg, err := config.LoadServer(path)
			if err != nil {
				t.Fatal(err)
			}
			crl, err := pki.ParseCRLUnverified([]byte(cfg.Security.CRL))
			if err != nil || len(crl.RevokedCertificateEntries) != 1 || crl.RevokedCertificateEntries[0].SerialNumber.Int64() != 0x4242 {
				t.Fatalf("the node did not take the CRL made before the junk write: %v", err)
			}
			if forced, err := op.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: path, Force: true}); err != nil || forced.Renewed {
				t.Fatalf("a forced renewal from a junk %s: %+v %v, want none", secret, forced, err)
			}
		})
	}
}
