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
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/internal/server"
)

// An aborted rotation leaves the aborted CA's key behind (perhaps why it
// was aborted). Its cross certificate, signed by the current CA, would make
// anything that key signs valid: abort revokes it, and a node refuses a
// chain through a revoked CA, not only a revoked leaf.
func TestAbortRevokesTheCrossCertificate(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	r := rotation{f: &certs.Fleet{Store: st}}
	if _, err := r.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	pend, _ := st.GetStage(ctx, []string{names.CACert(), names.CAKey()}, secretstore.Pending)
	cur, _ := st.Get(ctx, []string{names.CACross()})
	aborted, err := pki.ParseCert([]byte(pend[names.CACert()]))
	if err != nil {
		t.Fatal(err)
	}
	key, _ := pki.ParseKey([]byte(pend[names.CAKey()]))
	cross, err := pki.ParseCert([]byte(cur[names.CACross()]))
	if err != nil {
		t.Fatal(err)
	}
	ck, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	forged, err := (&pki.CA{Cert: aborted, Key: key}).IssueClient(ck.Public(), pki.Admin, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	// What a node does with a client chain: verify, then the CRL.
	accepts := func() error {
		t.Helper()
		if _, err := (&certs.Fleet{Store: st}).RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
			t.Fatal(err)
		}
		srv, _ := config.LoadServer(cfgPath)
		creds, err := server.CredentialsFromConfig(srv.Security)
		if err != nil {
			t.Fatal(err)
		}
		inter := x509.NewCertPool()
		inter.AddCert(cross)
		chains, err := forged.Cert.Verify(x509.VerifyOptions{Roots: creds.CAs, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
		if err != nil {
			return err
		}
		return pki.CheckChainsNotRevoked(chains, creds.Revoked)
	}
	if err := accepts(); err != nil {
		t.Fatalf("during the rotation a client of the new CA (with the cross) is refused: %v", err)
	}
	if _, err := r.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	if err := accepts(); err == nil {
		t.Fatal("after abort, a certificate of the aborted CA with its cross certificate is accepted")
	} else {
		t.Logf("after abort: %v", err)
	}
	rep := (&certs.Fleet{Store: st}).Status(ctx, certs.StatusOptions{})
	if len(rep.Revocations) != 1 || rep.Revocations[0].Serial != pki.SerialHex(cross.SerialNumber) {
		t.Fatalf("the cross certificate is not on the CRL: %+v", rep.Revocations)
	}
	// A new begin makes a new cross certificate, not the revoked one.
	if _, err := r.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	again, _ := st.Get(ctx, []string{names.CACross()})
	if again[names.CACross()] == cur[names.CACross()] {
		t.Fatal("begin after abort reused the revoked cross certificate")
	}
}
