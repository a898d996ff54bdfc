package certs_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// One root rotation by three Secrets Manager runs on <prefix>/ca-key,
// each step run twice: begin; promote, refused until the node trusts the
// new root; finish, refused while the node serves from the old root or
// sees its clients. The runs' versions never become current, and none
// keeps AWSPENDING once done. (Against moto, Lambda and real nodes:
// test/rotatesecret_root_test.go.)
func TestRotateSecretRootRuns(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	key := n.CAKey()

	// What the one node of the directory says; changed as the test goes.
	var facts certs.NodeFacts
	node := &certs.RootRunNodes{Addresses: []string{"127.0.0.1:1"}, ClientWindow: time.Hour,
		Info: func(context.Context, string) (certs.NodeFacts, error) { return facts, nil }}

	run := func(token string, steps ...string) error {
		_, err := runSteps(ctx, fl, st, key, token, steps...)
		return err
	}
	all := []string{certs.RotationCreate, certs.RotationCreate, certs.RotationSet, certs.RotationTest, certs.RotationTest, certs.RotationFinish, certs.RotationFinish}
	status := func() *certs.RotationStatus {
		t.Helper()
		s, err := fl.RotationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// A run refused as not ready names its step in its version (so that
	// its retry makes that step or none), and changes nothing current.
	noRun := func(token string) {
		t.Helper()
		if l, _ := st.Stages(ctx, key); l[secretstore.Current] == token {
			t.Fatalf("a run refused as not ready made version %s current", token)
		}
		if v, have, _ := st.GetVersion(ctx, key, token); have && !strings.HasPrefix(v, "joblet root rotation run: ") {
			t.Fatalf("a run refused as not ready wrote version %s without naming its step", token)
		}
	}
	doneRun := func() {
		t.Helper()
		if l, _ := st.Stages(ctx, key); l[secretstore.RotationPending] != "" {
			t.Fatalf("AWSPENDING stays on version %s after the run", l[secretstore.RotationPending])
		}
	}
	before, _ := st.Get(ctx, []string{key, n.CACert()})
	record := n.Rotation(mustCert(t, before[n.CACert()]).SerialNumber.Text(16))

	// Secrets Manager testing the function on a copy of the current key.
	if err := st.PutVersion(ctx, key, "copy", before[key], secretstore.RotationPending); err != nil {
		t.Fatal(err)
	}
	if err := run("copy", certs.RotationTest); err != nil {
		t.Fatalf("testSecret on a copy of the current key: %v", err)
	}
	st.MoveStage(ctx, key, secretstore.RotationPending, "")

	// Begin.
	if err := run("r1", all...); err != nil {
		t.Fatalf("the begin run: %v", err)
	}
	doneRun()
	s := status()
	if s.Phase != certs.PhaseBegun || s.Pending == nil {
		t.Fatalf("after the begin run the fleet is %s", s.Phase)
	}
	if got, _ := st.Get(ctx, []string{key}); got[key] != before[key] {
		t.Fatal("the begin run changed the current root key")
	}
	if got, _ := st.Get(ctx, []string{record}); got[record] == "" {
		t.Fatalf("no rotation record %s after the begin run", record)
	}
	pend, _ := st.GetStage(ctx, []string{key}, secretstore.Pending)
	if pk, err := pki.ParseKey([]byte(pend[key])); err != nil || s.Pending.KeyID == "" || pki.MatchesKey(mustCert(t, mustPending(t, st, n)), pk) != nil {
		t.Fatalf("the new root's key is not the staged (%s) version of %s: %v", secretstore.Pending, key, err)
	}

	// Promote: not without the directory, not while the node does not
	// trust the new root; then yes.
	if err := run("r2", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) {
		t.Fatalf("a promote run without the node directory: %v, want ErrNotReady", err)
	}
	noRun("r2")
	fl.RootRunNodes = node
	facts = certs.NodeFacts{NodeID: "n1", IssuerSHA256: s.Current.Fingerprint, AcceptedCAs: [][]byte{subjectOf(t, s.Current.KeyID)}}
	if err := run("r2", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) {
		t.Fatalf("a promote run while the node does not trust the new root: %v, want ErrNotReady", err)
	}
	noRun("r2")
	facts.AcceptedCAs = append(facts.AcceptedCAs, subjectOf(t, s.Pending.KeyID))
	if err := run("r2", all...); err != nil {
		t.Fatalf("the promote run: %v", err)
	}
	doneRun()
	p := status()
	if p.Phase != certs.PhasePromoted || p.Current.KeyID != s.Pending.KeyID {
		t.Fatalf("after the promote run: %s, current %s, want promoted, %s", p.Phase, p.Current.KeyID, s.Pending.KeyID)
	}

	// Finish: not while the node serves from the old root, nor while it
	// saw a client of the old root; then yes.
	if err := run("r3", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) {
		t.Fatalf("a finish run while the node serves from the old root: %v, want ErrNotReady", err)
	}
	facts.IssuerSHA256 = p.Current.Fingerprint
	facts.ClientIssuers = map[string]certs.ClientsSeen{s.Current.KeyID: {Handshakes: 3, LastSeen: time.Now()}}
	if err := run("r3", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) {
		t.Fatalf("a finish run while a client of the old root is about: %v, want ErrNotReady", err)
	}
	noRun("r3")
	facts.ClientIssuers = nil
	if err := run("r3", all...); err != nil {
		t.Fatalf("the finish run: %v", err)
	}
	doneRun()
	if f := status(); f.Phase != certs.PhaseStable || len(f.Trusted) != 1 || f.Current.KeyID != s.Pending.KeyID {
		t.Fatalf("after the finish run: %s, %d trusted", f.Phase, len(f.Trusted))
	}
	if got, _ := st.Get(ctx, []string{record}); got[record] != "" {
		t.Fatalf("the rotation record %s (a copy of the new root's key) outlives the rotation", record)
	}

	// A run begun by the schedule and made by hand meanwhile: its
	// finishSecret finds the step done and only ends the run.
	if err := run("r4", certs.RotationCreate); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err != nil {
		t.Fatal(err)
	}
	if err := run("r4", certs.RotationTest, certs.RotationFinish); err != nil {
		t.Fatalf("a begin run after a begin by hand: %v", err)
	}
	doneRun()
	// Its finishSecret invoked again after an abort by hand: the run
	// ended, and begins nothing.
	if err := run("r5", certs.RotationCreate); err != nil { // promote: the node trusts only the old root
		if !errors.Is(err, certs.ErrNotReady) {
			t.Fatal(err)
		}
	}
	if _, err := fl.AbortRotation(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run("r4", certs.RotationFinish); err != nil {
		t.Fatalf("an ended begin run's finishSecret again, after an abort: %v", err)
	}
	if status().Phase != certs.PhaseStable {
		t.Fatal("an ended run's finishSecret changed the fleet")
	}
	// A run under way that the fleet left behind (begun and promoted by
	// hand meanwhile): refused, nothing done. (After the abort, the record
	// deleted: runs do not begin the root an abort dropped.)
	cur, _ := st.Get(ctx, []string{n.CACert()})
	st.Delete(n.Rotation(mustCert(t, cur[n.CACert()]).SerialNumber.Text(16)))
	if err := run("r6", certs.RotationCreate); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.PromoteRotation(ctx); err != nil {
		t.Fatal(err)
	}
	if err := run("r6", certs.RotationFinish); !errors.Is(err, certs.ErrUsage) {
		t.Fatalf("a begin run's finishSecret on a promoted fleet: %v, want a usage error", err)
	}
	if status().Phase != certs.PhasePromoted {
		t.Fatal("a stale run's finishSecret changed the fleet")
	}
}

func mustPending(t *testing.T, st secretstore.Store, n certs.Names) string {
	t.Helper()
	got, err := st.GetStage(context.Background(), []string{n.CACert()}, secretstore.Pending)
	if err != nil || got[n.CACert()] == "" {
		t.Fatalf("no pending CA certificate: %v", err)
	}
	return got[n.CACert()]
}

func subjectOf(t *testing.T, keyID string) []byte {
	t.Helper()
	kid, err := pki.ParseKeyIDHex(keyID)
	if err != nil {
		t.Fatal(err)
	}
	s, err := pki.CASubject(kid)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The user-issuing CA by a Secrets Manager rotation, each step run twice:
// one new CA from the root, current after finishSecret; a pending value
// the root did not certify is refused.
func TestRotateSecretUserCA(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	if _, err := fl.RotateSecretStep(ctx, st, n.UserCA(), "u0", certs.RotationCreate); !errors.Is(err, certs.ErrUsage) {
		t.Fatalf("a rotation of a user-issuing CA the fleet does not have: %v, want a usage error", err)
	}
	if _, err := fl.MakeUserCA(ctx, false, 0, pki.ECDSAP256); err != nil {
		t.Fatal(err)
	}
	before, _ := st.Get(ctx, []string{n.UserCA()})
	for _, step := range []string{certs.RotationCreate, certs.RotationCreate, certs.RotationSet, certs.RotationTest, certs.RotationFinish, certs.RotationFinish} {
		if _, err := fl.RotateSecretStep(ctx, st, n.UserCA(), "u1", step); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	after, _ := st.Get(ctx, []string{n.UserCA()})
	pending, _, _ := st.GetVersion(ctx, n.UserCA(), "u1")
	if after[n.UserCA()] == before[n.UserCA()] || after[n.UserCA()] != pending {
		t.Fatal("after finishSecret the current user-issuing CA is not the rotation's")
	}
	certPEM, keyPEM := pki.SplitPEM([]byte(pending))
	c := mustCert(t, string(certPEM))
	if !pki.IsUserCA(c) || pki.MatchesKey(c, mustParseKey(t, string(keyPEM))) != nil {
		t.Fatal("the rotated user-issuing CA is not one, or not its key's")
	}
	if l, _ := st.Stages(ctx, n.UserCA()); l[secretstore.RotationPending] != "" {
		t.Fatal("AWSPENDING stays after the rotation")
	}

	// A CA the root did not sign, planted as a rotation's version.
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	self, err := pki.NewCA(k, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := pki.EncodeKey(k)
	st.PutVersion(ctx, n.UserCA(), "planted", string(pki.EncodeCert(self))+string(kp), secretstore.RotationPending)
	for _, step := range []string{certs.RotationTest, certs.RotationFinish} {
		if _, err := fl.RotateSecretStep(ctx, st, n.UserCA(), "planted", step); !errors.Is(err, certs.ErrInconsistentStore) {
			t.Fatalf("%s on a planted user-issuing CA: %v, want refused", step, err)
		}
	}
	if got, _ := st.Get(ctx, []string{n.UserCA()}); got[n.UserCA()] != pending {
		t.Fatal("a planted user-issuing CA became current")
	}
}
