package certs_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// An operator's `rotate-ca abort` is a decision a scheduled run must not
// undo. A promote run waiting for the fleet (Secrets Manager keeps its
// AWSPENDING and retries it with the same token) finds the fleet stable
// after the abort: its retry, or the next scheduled run, would begin again
// with the root the rotation record names, the one the operator dropped
// (perhaps because its key leaked), and cross-sign it again. The runs
// refuse, saying how to go on; a begin by hand still resumes it.
func TestReview27AbortIsNotUndoneByAScheduledRun(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	key := n.CAKey()
	phase := func() *certs.RotationStatus {
		t.Helper()
		s, err := fl.RotationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	if _, err := runSteps(ctx, fl, st, key, "r1", allSteps...); err != nil {
		t.Fatalf("the begin run: %v", err)
	}
	dropped := phase().Pending
	// The promote run waits (no node directory): Secrets Manager retries it.
	if _, err := runSteps(ctx, fl, st, key, "r2", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) {
		t.Fatalf("the promote run: %v, want ErrNotReady", err)
	}
	if _, err := fl.AbortRotation(ctx); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"r2", "r3"} { // the retry, the next scheduled run
		_, err := runSteps(ctx, fl, st, key, token, allSteps...)
		if s := phase(); s.Phase != certs.PhaseStable {
			t.Fatalf("run %s after an abort by hand: the fleet is %s again, pending %s (the dropped root was %s)", token, s.Phase, s.Pending.Fingerprint, dropped.Fingerprint)
		}
		if !errors.Is(err, certs.ErrUsage) || !strings.Contains(err.Error(), "abort") || !strings.Contains(err.Error(), "ca-rotation/") {
			t.Fatalf("run %s after an abort by hand: %v, want a usage error naming the abort and the record", token, err)
		}
	}
	// By hand, the same root comes back (docs/ROTATION.md, Rolling back).
	if s, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err != nil || s.Pending == nil || s.Pending.Fingerprint != dropped.Fingerprint {
		t.Fatalf("begin by hand after the abort: %+v %v", s, err)
	}
}

// bootstrappedFleet bootstraps a fleet on st (a versionStore, or one
// wrapping it) and returns it, with the names of its secrets.
func bootstrappedFleet(t *testing.T, st secretstore.Store) (*certs.Fleet, certs.Names) {
	t.Helper()
	o := opts(t, st)
	bootstrap(t, o)
	return &certs.Fleet{Store: st, Log: o.Fleet.Log}, certs.Names{Prefix: "joblet"}
}

// allSteps are a run's four steps, in Secrets Manager's order.
var allSteps = []string{certs.RotationCreate, certs.RotationSet, certs.RotationTest, certs.RotationFinish}

// runSteps runs steps of the run token of secret, in order, until one
// fails: it returns that step and its error ("" and nil when all went).
func runSteps(ctx context.Context, fl *certs.Fleet, vs certs.VersionStore, secret, token string, steps ...string) (string, error) {
	for _, step := range steps {
		if _, err := fl.RotateSecretStep(ctx, vs, secret, token, step); err != nil {
			return step, err
		}
	}
	return "", nil
}

// oneNode is a root run's node directory of one node at addr, answering
// with info, and a client window of an hour.
func oneNode(addr string, info func(context.Context, string) (certs.NodeFacts, error)) *certs.RootRunNodes {
	return &certs.RootRunNodes{Addresses: []string{addr}, ClientWindow: time.Hour, Info: info}
}

// beginAndPromote begins a root rotation by hand and promotes it,
// returning both statuses.
func beginAndPromote(t *testing.T, fl *certs.Fleet) (begun, promoted *certs.RotationStatus) {
	t.Helper()
	ctx := context.Background()
	b, err := fl.BeginRotation(ctx, certs.CAKeyRef{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := fl.PromoteRotation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return b, p
}

// plantPendingKey writes a new key nobody listed as secret's staged
// (JOBLET_PENDING) version, as someone with PutSecretValue alone can.
func plantPendingKey(t *testing.T, st secretstore.Store, secret string) {
	t.Helper()
	planted, err := pki.GenerateKey("ecdsa-p256", nil)
	if err != nil {
		t.Fatal(err)
	}
	pemKey, _ := pki.EncodeKey(planted)
	if err := st.PutPending(context.Background(), secret, string(pemKey)); err != nil {
		t.Fatal(err)
	}
}

// adoptingStore is versionStore with awssm.Store's AdoptLegacyPending (a
// version PutPending made, its id "joblet-" and its value's hash, labelled
// AWSPENDING and not current, on a secret with no JOBLET_PENDING version,
// becomes the staged one).
// With prefixOnly, any id starting "joblet-" is taken, as before
// AdoptLegacyPending checked the hash.
type adoptingStore struct {
	*versionStore
	prefixOnly bool
}

func (a adoptingStore) AdoptLegacyPending(ctx context.Context, names []string) ([]string, error) {
	var moved []string
	for _, name := range names {
		labels, _ := a.Stages(ctx, name)
		id := labels[secretstore.RotationPending]
		if !strings.HasPrefix(id, "joblet-") || id == labels[secretstore.Current] {
			continue
		}
		if own, _ := a.GetStage(ctx, []string{name}, secretstore.Pending); own[name] != "" {
			continue
		}
		value, _, _ := a.GetVersion(ctx, name, id)
		if !a.prefixOnly && (value == "" || id != stagedID(value)) {
			continue // not a version PutPending made
		}
		if err := a.PutPending(ctx, name, value); err != nil {
			return moved, err
		}
		if err := a.MoveStage(ctx, name, secretstore.RotationPending, ""); err != nil {
			return moved, err
		}
		moved = append(moved, name)
	}
	return moved, nil
}

var _ secretstore.PendingAdopter = adoptingStore{}

// stagedID is the id awssm's PutPending gives a version of value.
func stagedID(value string) string {
	sum := sha256.Sum256([]byte(value))
	return secretstore.StagedVersionPrefix + hex.EncodeToString(sum[:16])
}

// Someone allowed RotateSecret on ca-key (or to invoke the function)
// chooses the ClientRequestToken. A run whose token starts "joblet-", the
// prefix of rotate-ca's own staged versions, wrote its run version with
// AWSPENDING, and the next rotate-ca step's move of a legacy AWSPENDING
// (AdoptLegacyPending) made that run version the staged ca-key: a
// promoted fleet read as "begun, interrupted", where `rotate-ca finish`
// and `promote` are refused and an abort drops the old root with no
// finish gate. Such a token is refused before anything is written.
func TestReview27RunTokenIsNeverAStagedVersion(t *testing.T) {
	ctx := context.Background()
	vs := newVersionStore()
	st := adoptingStore{vs, true} // the refusal holds without the hash check too
	fl, n := bootstrappedFleet(t, st)
	key := n.CAKey()
	_, s := beginAndPromote(t, fl)
	// The one node is ready for the finish.
	fl.RootRunNodes = oneNode("127.0.0.1:1", func(context.Context, string) (certs.NodeFacts, error) {
		return certs.NodeFacts{NodeID: "n1", IssuerSHA256: s.Current.Fingerprint}, nil
	})
	const token = "joblet-0123456789abcdef0123456789abcdef"
	_, runErr := runSteps(ctx, fl, vs, key, token, allSteps...)
	after, err := fl.RotationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if after.Phase != certs.PhasePromoted || after.Interrupted {
		t.Fatalf("a run with token %s left the promoted fleet %s (interrupted %v); the run said %v", token, after.Phase, after.Interrupted, runErr)
	}
	if runErr != nil && (!errors.Is(runErr, certs.ErrUsage) || !strings.Contains(runErr.Error(), "joblet-")) {
		t.Fatalf("a run with token %s: %v, want nothing done or a usage error naming the prefix", token, runErr)
	}
	if v, _, _ := vs.GetVersion(ctx, key, token); v != "" {
		t.Fatalf("the refused run wrote version %s", token)
	}
	if _, err := fl.FinishRotation(ctx); err != nil {
		t.Fatalf("finish by hand after the refused run: %v", err)
	}
}

// A version of ca-key labelled JOBLET_PENDING, written without the root
// key (PutSecretValue on ca-key is all it takes) while a rotation is
// promoted, made the fleet read as "begun, interrupted": finish and
// promote refused, the root run failed with "run `rotate-ca begin` by
// hand", and that begin (or an abort) signed a trust state without the
// outgoing root, a finish with no gate, while clients of the old root
// were still about. A begin is never interrupted once the trust state
// holds two roots: the fleet stays promoted, and its steps work.
func TestReview27PlantedPendingKeyKeepsThePromotedPhase(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	beginAndPromote(t, fl)
	plantPendingKey(t, st, n.CAKey())
	s, err := fl.RotationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Phase != certs.PhasePromoted || s.Interrupted || len(s.Trusted) != 2 {
		// What an operator told "run begin by hand" then gets:
		b, berr := fl.BeginRotation(ctx, certs.CAKeyRef{})
		var trusted int
		if b != nil {
			trusted = len(b.Trusted)
		}
		t.Fatalf("a pending ca-key planted while promoted: the fleet reads %s (interrupted %v); a begin by hand then leaves %d roots trusted (%v)", s.Phase, s.Interrupted, trusted, berr)
	}
	if _, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err == nil {
		t.Fatal("begin while promoted went ahead")
	}
	// (Once finished, one root trusted, the stray key reads as a begin
	// interrupted, which a begin by hand completes as any begin.)
	if f, err := fl.FinishRotation(ctx); err != nil || len(f.Trusted) != 1 || f.Current.Fingerprint != s.Current.Fingerprint {
		t.Fatalf("finish by hand: %+v %v", f, err)
	}
}

// A version of ca-key labelled JOBLET_PENDING, written without the root
// key while a rotation is begun, made every rotate-ca step fail ("ca-cert
// is not the certificate of ca-key ... re-run", which re-running never
// changes), the root runs too; and `rotate-ca promote` by hand, which
// goes on after such a read to complete a promote stopped between its
// moves, moved the CA certificate with no key to follow it: the current
// certificate the new root's, the current key the old one's, no step
// able to sign again. The pending CA's key is the one the rotation
// record (vouched by the current root) holds; promote stages it again
// before it moves anything.
func TestReview27PlantedPendingKeyDuringBegunIsNotAWedge(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	b, err := fl.BeginRotation(ctx, certs.CAKeyRef{})
	if err != nil {
		t.Fatal(err)
	}
	plantPendingKey(t, st, n.CAKey())
	if s, err := fl.RotationStatus(ctx); err != nil || s.Phase != certs.PhaseBegun || s.Pending == nil || s.Pending.Fingerprint != b.Pending.Fingerprint {
		t.Fatalf("status with a planted pending ca-key: %+v %v", s, err)
	}
	p, err := fl.PromoteRotation(ctx)
	if err != nil {
		t.Fatalf("promote with a planted pending ca-key: %v", err)
	}
	if p.Current.Fingerprint != b.Pending.Fingerprint {
		t.Fatalf("after promote the current root is %s, want %s", p.Current.Fingerprint, b.Pending.Fingerprint)
	}
	cur, _ := st.Get(ctx, []string{n.CACert(), n.CAKey()})
	if pki.MatchesKey(mustCert(t, cur[n.CACert()]), mustParseKey(t, cur[n.CAKey()])) != nil {
		t.Fatal("after promote the current ca-key is not the current root's key")
	}
	if f, err := fl.FinishRotation(ctx); err != nil || len(f.Trusted) != 1 {
		t.Fatalf("finish: %+v %v", f, err)
	}
}

// A root run that waits says what the function's operator can change: a
// node that does not answer is to be taken out of JOBLET_NODES when gone
// (not "wait for its refresh"); a finish held back by old clients names
// JOBLET_CLIENT_WINDOW, the function's setting, not only rotate-ca's flags.
func TestReview27RootRunWaitsSayWhatToChange(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	key := n.CAKey()
	if _, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err != nil {
		t.Fatal(err)
	}
	fl.RootRunNodes = oneNode("10.9.9.9:50051", func(context.Context, string) (certs.NodeFacts, error) {
		return certs.NodeFacts{}, errors.New("i/o timeout")
	})
	if _, err := fl.RotateSecretStep(ctx, st, key, "p1", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) || !strings.Contains(err.Error(), "out of JOBLET_NODES") {
		t.Fatalf("a promote run with a node that does not answer: %v", err)
	}
	s, err := fl.PromoteRotation(ctx)
	if err != nil {
		t.Fatal(err)
	}
	old := s.Trusted[0].KeyID
	if old == s.Current.KeyID {
		old = s.Trusted[1].KeyID
	}
	fl.RootRunNodes.Info = func(context.Context, string) (certs.NodeFacts, error) {
		return certs.NodeFacts{NodeID: "n1", IssuerSHA256: s.Current.Fingerprint, ClientIssuers: map[string]certs.ClientsSeen{old: {Handshakes: 1, LastSeen: time.Now()}}}, nil
	}
	if _, err := fl.RotateSecretStep(ctx, st, key, "f1", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) || !strings.Contains(err.Error(), "JOBLET_CLIENT_WINDOW") {
		t.Fatalf("a finish run held back by an old client: %v", err)
	}
}

// A version of ca-key labelled AWSPENDING that no run wrote (PutSecretValue
// without the root key): its steps do nothing, and say how to end it, since
// Secrets Manager retries it and refuses the secret's next rotation
// meanwhile.
func TestReview27PlantedRunVersionSaysHowToEndIt(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	key := n.CAKey()
	before, _ := fl.RotationStatus(ctx)
	if err := st.PutVersion(ctx, key, "planted", "joblet root rotation run: promote-now\nnot a key", secretstore.RotationPending); err != nil {
		t.Fatal(err)
	}
	for _, step := range []string{certs.RotationTest, certs.RotationFinish} {
		_, err := fl.RotateSecretStep(ctx, st, key, "planted", step)
		if err == nil || !strings.Contains(err.Error(), "--remove-from-version-id planted") {
			t.Fatalf("%s of a planted run version: %v, want how to end it", step, err)
		}
	}
	if after, _ := fl.RotationStatus(ctx); after.Phase != before.Phase || after.Current.Fingerprint != before.Current.Fingerprint {
		t.Fatal("a planted run version changed the fleet")
	}
}

// A finish run waiting for old clients to go (Secrets Manager retries it
// with the same token), and the operator rolls back with `rotate-ca abort`
// from promoted (the old root current again, the new one pending: nodes
// renew back, then a second abort drops it). The run's retry found the
// fleet begun, with every node trusting the pending root, and promoted it
// again, minutes after the operator undid that promote. A run retried is
// the run it was: it names its step before it waits, and a retry on a
// fleet that moved on is refused.
func TestReview27WaitingRunDoesNotRedoAnAbortedPromote(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	key := n.CAKey()
	b, p := beginAndPromote(t, fl)
	// The node trusts both roots and serves from the new one, and a client
	// of the old root is about: the finish run waits.
	oldKID := b.Current.KeyID
	facts := certs.NodeFacts{NodeID: "n1", IssuerSHA256: p.Current.Fingerprint, AcceptedCAs: [][]byte{subjectOf(t, b.Current.KeyID), subjectOf(t, b.Pending.KeyID)},
		ClientIssuers: map[string]certs.ClientsSeen{oldKID: {Handshakes: 1, LastSeen: time.Now()}}}
	fl.RootRunNodes = oneNode("127.0.0.1:1", func(context.Context, string) (certs.NodeFacts, error) { return facts, nil })
	if _, err := fl.RotateSecretStep(ctx, st, key, "f1", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) {
		t.Fatalf("the finish run: %v, want ErrNotReady", err)
	}
	a, err := fl.AbortRotation(ctx)
	if err != nil || a.Phase != certs.PhaseBegun || a.Current.Fingerprint != b.Current.Fingerprint {
		t.Fatalf("abort from promoted: %+v %v", a, err)
	}
	facts.IssuerSHA256 = a.Current.Fingerprint // the node renewed back
	_, runErr := runSteps(ctx, fl, st, key, "f1", allSteps...)
	s, err := fl.RotationStatus(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Phase != certs.PhaseBegun || s.Current.Fingerprint != b.Current.Fingerprint {
		t.Fatalf("the waiting finish run's retry after an abort from promoted: the fleet is %s, current %s (the operator rolled back to %s); the run said %v", s.Phase, s.Current.Fingerprint, b.Current.Fingerprint, runErr)
	}
	if runErr == nil {
		t.Fatal("the retry succeeded without doing its step")
	}
}

// A rotation begun by an earlier joblet holds AWSPENDING on its staged
// versions (ids "joblet-" and a hash), which Secrets Manager takes for a
// rotation of its own in progress: scheduling ca-key then, it runs that
// version's id as the token. The function moves the begun rotation onto
// JOBLET_PENDING and ends the run (it does not tell the operator to strip
// AWSPENDING off the begun rotation's key).
func TestReview27LegacyBegunRotationRunAsAToken(t *testing.T) {
	ctx := context.Background()
	vs := newVersionStore()
	st := adoptingStore{vs, false}
	fl, n := bootstrappedFleet(t, st)
	b, err := fl.BeginRotation(ctx, certs.CAKeyRef{})
	if err != nil {
		t.Fatal(err)
	}
	// As an earlier joblet left it: ca-key's staged version under AWSPENDING.
	pend, _ := st.GetStage(ctx, []string{n.CAKey()}, secretstore.Pending)
	legacy := stagedID(pend[n.CAKey()])
	if err := vs.PutVersion(ctx, n.CAKey(), legacy, pend[n.CAKey()], secretstore.RotationPending); err != nil {
		t.Fatal(err)
	}
	if err := st.DropPending(ctx, n.CAKey()); err != nil {
		t.Fatal(err)
	}
	if step, err := runSteps(ctx, fl, vs, n.CAKey(), legacy, allSteps...); err != nil {
		t.Fatalf("%s of the legacy staged version as a token: %v", step, err)
	}
	s, err := fl.RotationStatus(ctx)
	if err != nil || s.Phase != certs.PhaseBegun || s.Interrupted || s.Pending == nil || s.Pending.Fingerprint != b.Pending.Fingerprint {
		t.Fatalf("after Secrets Manager ran the legacy version: %+v %v", s, err)
	}
	if l, _ := vs.Stages(ctx, n.CAKey()); l[secretstore.RotationPending] != "" {
		t.Fatalf("AWSPENDING still on %s: the schedule stays stopped", l[secretstore.RotationPending])
	}
	// A token starting "joblet-" that is no staged version, held by
	// Secrets Manager (RotateSecret makes its empty version): refused,
	// saying how to end it.
	const token = "joblet-0123456789abcdef0123456789abcdef"
	if err := vs.PutVersion(ctx, n.CAKey(), token, "", secretstore.RotationPending); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.RotateSecretStep(ctx, vs, n.CAKey(), token, certs.RotationCreate); !errors.Is(err, certs.ErrUsage) || !strings.Contains(err.Error(), "--remove-from-version-id "+token) {
		t.Fatalf("createSecret of a run with token %s held by Secrets Manager: %v, want a usage error saying how to end it", token, err)
	}
}

// A role's certificate revoked (its key leaked, say) and not yet re-issued
// with a new key: a rotation's begin and promote certified that same key
// again from the new root (each role keeps its key through a rotation),
// with a new serial no CRL lists. Run by Secrets Manager's schedule, with
// nobody watching, the revocation quietly ended. Checked through the whole
// rotation: no unrevoked certificate in the store certifies the key.
func TestReview27RotationDoesNotRecertifyARevokedRolesKey(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	fl, n := bootstrappedFleet(t, st)
	name := n.ClientCert(pki.Developer)
	cur, _ := st.Get(ctx, []string{name})
	revoked := mustCert(t, cur[name])
	if _, err := fl.Revoke(ctx, revoked.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	check := func(step string) {
		t.Helper()
		for _, stage := range []secretstore.Stage{secretstore.Current, secretstore.Pending} {
			got, _ := st.GetStage(ctx, []string{name}, stage)
			if got[name] == "" {
				continue
			}
			c := mustCert(t, got[name])
			if c.SerialNumber.Cmp(revoked.SerialNumber) != 0 && pki.SameKey(c, revoked) {
				t.Fatalf("after %s: the %s version of %s (serial %s) certifies the key of the revoked certificate %s", step, stage, name, pki.SerialHex(c.SerialNumber), pki.SerialHex(revoked.SerialNumber))
			}
		}
	}
	// The rotation goes on for the other roles; the revoked one waits for
	// `certs reissue` (a new key).
	if b, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err != nil || b.Phase != certs.PhaseBegun || b.Interrupted {
		t.Fatalf("begin with a revoked role: %+v %v", b, err)
	}
	check("begin")
	if _, err := fl.PromoteRotation(ctx); err != nil {
		t.Fatalf("promote with a revoked role: %v", err)
	}
	check("promote")
	if f, err := fl.FinishRotation(ctx); err != nil || f.Phase != certs.PhaseStable {
		t.Fatalf("finish with a revoked role: %+v %v", f, err)
	}
	check("finish")
}
