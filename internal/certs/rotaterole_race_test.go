package certs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
)

// slowVersions is the rotation function's store that stops at its first
// read of a re-issue record (after reading the role's certificate) until
// released, as slowClaim does for an operator's.
type slowVersions struct {
	*versionStore
	recordGate
}

func (s *slowVersions) Get(ctx context.Context, ns []string) (map[string]string, error) {
	s.at(ns)
	return s.versionStore.Get(ctx, ns)
}

// The rotation function's createSecret for a role claims the pair as
// `joblet certs reissue` does, and so must check, as reissue does, that
// the role's certificate is still the one it read before it writes:
// while it read the old certificate, operators re-issued the role (twice:
// it would find the first's pair and put back a certificate the second
// replaced), or re-issued and pruned with no grace (it would make another
// pair and replace the operator's). It writes nothing, removes the record
// it made, and the operator's certificate stays the role's.
func TestRotateRoleSlowCreateAfterReissue(t *testing.T) {
	for _, tc := range []struct {
		name    string
		operate func(t *testing.T, st *versionStore) *certs.Reissued
		records int
	}{
		{"two re-issues meanwhile", func(t *testing.T, st *versionStore) *certs.Reissued {
			if _, err := at(st, 0).Reissue(context.Background(), pki.Developer); err != nil {
				t.Fatal(err)
			}
			r, err := at(st, 0).Reissue(context.Background(), pki.Developer)
			if err != nil {
				t.Fatal(err)
			}
			return r
		}, 2},
		{"a re-issue, then a prune with no grace", func(t *testing.T, st *versionStore) *certs.Reissued {
			r, err := at(st, 0).Reissue(context.Background(), pki.Developer)
			if err != nil {
				t.Fatal(err)
			}
			if res := prune(t, at(st, 0), certs.PruneOptions{Grace: -1}); res.Removed != 1 {
				t.Fatalf("the prune: %+v", res.Records)
			}
			return r
		}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := newVersionStore()
			bootstrap(t, opts(t, st))
			slow := &slowVersions{versionStore: st, recordGate: newRecordGate()}
			fn := at(slow, 0)
			var cerr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				_, cerr = fn.RotateSecretStep(ctx, slow, names.ClientKey(pki.Developer), "token-r", certs.RotationCreate)
			}()
			<-slow.reached
			last := tc.operate(t, st)
			close(slow.release)
			<-done
			if cerr == nil {
				// What the rotation then does: its pending pair replaces
				// the operator's.
				for _, step := range []string{certs.RotationSet, certs.RotationTest, certs.RotationFinish} {
					if _, err := fn.RotateSecretStep(ctx, slow, names.ClientKey(pki.Developer), "token-r", step); err != nil {
						t.Fatalf("%s: %v", step, err)
					}
				}
			}
			cur, _ := pki.ParseCert([]byte(everything(t, st)[names.ClientCert(pki.Developer)]))
			if got := pki.SerialHex(cur.SerialNumber); got != last.NewSerial {
				t.Fatalf("the developer certificate is %s, want the operator's last %s (createSecret: %v)", got, last.NewSerial, cerr)
			}
			if !errors.Is(cerr, certs.ErrReissuedMeanwhile) {
				t.Fatalf("createSecret: %v, want ErrReissuedMeanwhile", cerr)
			}
			if recs := records(t, st); len(recs) != tc.records {
				t.Fatalf("records %v, want %d", recs, tc.records)
			}
		})
	}
}

// noRemove is a store that may not remove secrets (the rotation
// function's policy removes no re-issue record).
type noRemove struct{ *slowVersions }

func (noRemove) Remove(context.Context, string) error { return errors.New("AccessDenied") }

// A slow run's record that it could not remove (its pair never became
// the role's: made after the role's certificate last changed, from an
// older one) goes after the grace: it holds the private key of a valid
// certificate no one uses. A record whose newer pair a put-back
// certificate replaced stays (TestPrunePlantedRecords).
func TestPruneRemovesASlowRunsOrphanRecord(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	bootstrap(t, opts(t, st))
	slow := noRemove{&slowVersions{versionStore: st, recordGate: newRecordGate()}}
	fn := at(slow, time.Minute) // its pair issued after the operator's
	done := make(chan error)
	go func() {
		_, err := fn.RotateSecretStep(ctx, slow, names.ClientKey(pki.Developer), "token-o", certs.RotationCreate)
		done <- err
	}()
	<-slow.reached
	r, err := at(st, 0).Reissue(ctx, pki.Developer)
	if err != nil {
		t.Fatal(err)
	}
	prune(t, at(st, 0), certs.PruneOptions{Grace: -1})
	close(slow.release)
	if err := <-done; !errors.Is(err, certs.ErrReissuedMeanwhile) {
		t.Fatalf("createSecret: %v, want ErrReissuedMeanwhile", err)
	}
	orphan := names.Reissue(pki.Developer, hexOf(t, r.OldSerial))
	if recs := records(t, st); len(recs) != 1 || recs[0] != orphan {
		t.Fatalf("records %v, want the slow run's %s", recs, orphan)
	}
	if res := prune(t, at(st, 30*time.Minute), certs.PruneOptions{}); fate(res, orphan).Fate != certs.RecordKept {
		t.Fatalf("within the grace: %+v", res.Records)
	}
	res := prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{})
	if got := fate(res, orphan); got.Fate != certs.RecordRemoved {
		t.Fatalf("past the grace: %+v", got)
	}
	cur, _ := pki.ParseCert([]byte(everything(t, st)[names.ClientCert(pki.Developer)]))
	if pki.SerialHex(cur.SerialNumber) != r.NewSerial {
		t.Fatalf("the developer certificate is %s, want %s", pki.SerialHex(cur.SerialNumber), r.NewSerial)
	}
}
