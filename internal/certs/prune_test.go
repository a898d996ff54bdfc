package certs_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// at is an operator's fleet whose clock reads now+ahead.
func at(st secretstore.Store, ahead time.Duration) *certs.Fleet {
	return &certs.Fleet{Store: st, ClientLifetime: 24 * time.Hour, Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Now: func() time.Time { return time.Now().Add(ahead) }}
}

// everything is every secret outside the re-issue records, as read now.
func everything(t *testing.T, st secretstore.Store) map[string]string {
	t.Helper()
	got, err := st.Get(context.Background(), append(names.All(), names.Bundle(), names.CRL(), names.CACross(), names.CAKMSKey()))
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// records lists the re-issue records' names.
func records(t *testing.T, st secretstore.Store) []string {
	t.Helper()
	ls, err := st.(secretstore.Lister).List(context.Background(), names.ReissueDir())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return out
}

func prune(t *testing.T, fl *certs.Fleet, o certs.PruneOptions) *certs.Pruned {
	t.Helper()
	res, err := fl.PruneReissueRecords(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func fate(res *certs.Pruned, name string) certs.PrunedRecord {
	for _, r := range res.Records {
		if r.Secret == name {
			return r
		}
	}
	return certs.PrunedRecord{}
}

// Completed re-issues' records stay for the grace, then go; nothing else
// in the store changes, and the fleet still bootstraps. In the memory and
// the directory store.
func TestPruneReissueRecordsAfterGrace(t *testing.T) {
	for name, newStore := range map[string]func(t *testing.T) secretstore.Store{
		"memory": func(*testing.T) secretstore.Store { return storetest.NewMemoryStore() },
		"dir": func(t *testing.T) secretstore.Store {
			st, err := secretstore.NewDirStore(filepath.Join(t.TempDir(), "store"))
			if err != nil {
				t.Fatal(err)
			}
			return st
		},
	} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			st := newStore(t)
			bootstrap(t, opts(t, st))
			first, err := at(st, 0).Reissue(ctx, pki.Developer)
			if err != nil {
				t.Fatal(err)
			}
			second, err := at(st, 0).Reissue(ctx, pki.Developer)
			if err != nil {
				t.Fatal(err)
			}
			recs := records(t, st)
			if len(recs) != 2 {
				t.Fatalf("records %v, want two", recs)
			}
			before := everything(t, st)
			for _, ahead := range []time.Duration{0, certs.ReissueRecordGrace - time.Minute} {
				res := prune(t, at(st, ahead), certs.PruneOptions{})
				if res.Removed != 0 || len(records(t, st)) != 2 {
					t.Fatalf("%v after the re-issues: removed %d, %+v", ahead, res.Removed, res.Records)
				}
			}
			res := prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{DryRun: true})
			if res.Removed != 0 || len(records(t, st)) != 2 || fate(res, recs[0]).Fate != certs.RecordRemovable {
				t.Fatalf("a dry run: %+v", res)
			}
			res = prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{})
			if res.Removed != 2 || len(records(t, st)) != 0 {
				t.Fatalf("past the grace: removed %d, %+v, left %v", res.Removed, res.Records, records(t, st))
			}
			if after := everything(t, st); !maps.Equal(before, after) {
				t.Fatal("the prune changed a secret that is not a re-issue record")
			}
			c, _ := pki.ParseCert([]byte(before[names.ClientCert(pki.Developer)]))
			if pki.SerialHex(c.SerialNumber) != second.NewSerial || first.NewSerial != second.OldSerial {
				t.Fatalf("the developer certificate is %s, want %s", pki.SerialHex(c.SerialNumber), second.NewSerial)
			}
			bootstrap(t, opts(t, st))
			// A third re-issue after the prune starts a new record.
			if _, err := at(st, 0).Reissue(ctx, pki.Developer); err != nil {
				t.Fatal(err)
			}
			if recs := records(t, st); len(recs) != 1 || !strings.HasSuffix(recs[0], "developer-"+hexOf(t, second.NewSerial)) {
				t.Fatalf("after a third re-issue: %v", recs)
			}
		})
	}
}

// An interrupted re-issue's record is kept however old, and the next run
// completes the same pair from it; the grace then counts from the
// completion, not from the record's creation.
func TestPruneKeepsInterruptedReissue(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	if _, err := at(failCertPut{st}, 0).Reissue(ctx, pki.Developer); err == nil {
		t.Fatal("the interrupted run reported success")
	}
	recs := records(t, st)
	if len(recs) != 1 {
		t.Fatalf("records %v", recs)
	}
	long := time.Now().Add(-72 * time.Hour)
	st.SetTimes(recs[0], long, long)
	half, _ := st.Get(ctx, []string{names.ClientKey(pki.Developer)})
	res := prune(t, at(st, 0), certs.PruneOptions{Grace: -1})
	if r := fate(res, recs[0]); r.Fate != certs.RecordKept || !strings.Contains(r.Reason, "not complete") {
		t.Fatalf("the interrupted re-issue's record: %+v", r)
	}
	if _, err := at(st, 0).Reissue(ctx, pki.Developer); err != nil {
		t.Fatal(err)
	}
	if got, _ := st.Get(ctx, []string{names.ClientKey(pki.Developer)}); got[names.ClientKey(pki.Developer)] != half[names.ClientKey(pki.Developer)] {
		t.Fatal("the completing run wrote another key than the record's")
	}
	// The record is three days old, the completion new: a run that read
	// the old certificate just before the completion may still come.
	res = prune(t, at(st, certs.ReissueRecordGrace/2), certs.PruneOptions{})
	if r := fate(res, recs[0]); r.Fate != certs.RecordKept || !strings.Contains(r.Reason, "grace") {
		t.Fatalf("right after the completion: %+v", r)
	}
	if res := prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{}); res.Removed != 1 {
		t.Fatalf("past the grace after the completion: %+v", res.Records)
	}
}

// recordGate stops a store's first read of a re-issue record (made after
// the role's certificate is read) until released.
type recordGate struct {
	once             sync.Once
	reached, release chan struct{}
}

func newRecordGate() recordGate {
	return recordGate{reached: make(chan struct{}), release: make(chan struct{})}
}

func (g *recordGate) at(ns []string) {
	for _, n := range ns {
		if strings.HasPrefix(n, names.ReissueDir()+"/") {
			g.once.Do(func() { close(g.reached); <-g.release })
		}
	}
}

// slowClaim is an operator's store stopped at its first record read.
type slowClaim struct {
	*storetest.MemoryStore
	recordGate
}

func (s *slowClaim) Get(ctx context.Context, ns []string) (map[string]string, error) {
	s.at(ns)
	return s.MemoryStore.Get(ctx, ns)
}

// Two operators re-issue one role; the slow one read the old certificate,
// the fast one completed and pruned. Within the grace the slow one finds
// the record and writes the same pair. Without a grace (a run that slept
// past it) it finds no record and makes another pair: it sees, before
// writing, that the role's certificate changed, writes nothing and
// removes the record it made; the fast one's pair stays.
func TestPruneSlowConcurrentOperator(t *testing.T) {
	for _, tc := range []struct {
		name  string
		grace time.Duration
		same  bool
	}{{"default grace", 0, true}, {"no grace (a run past it)", -1, false}} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			st := storetest.NewMemoryStore()
			bootstrap(t, opts(t, st))
			slow := &slowClaim{MemoryStore: st, recordGate: newRecordGate()}
			var b *certs.Reissued
			var berr error
			done := make(chan struct{})
			go func() {
				defer close(done)
				b, berr = at(slow, 0).Reissue(ctx, pki.Developer)
			}()
			<-slow.reached
			a, err := at(st, 0).Reissue(ctx, pki.Developer)
			if err != nil {
				t.Fatal(err)
			}
			prune(t, at(st, 0), certs.PruneOptions{Grace: tc.grace})
			close(slow.release)
			<-done
			c, _ := pki.ParseCert([]byte(everything(t, st)[names.ClientCert(pki.Developer)]))
			if pki.SerialHex(c.SerialNumber) != a.NewSerial {
				t.Fatalf("the developer certificate is %s, want the fast run's %s", pki.SerialHex(c.SerialNumber), a.NewSerial)
			}
			if tc.same {
				if berr != nil || b.NewSerial != a.NewSerial {
					t.Fatalf("the slow run: %+v %v, want the fast run's pair %s", b, berr, a.NewSerial)
				}
				return
			}
			if !errors.Is(berr, certs.ErrReissuedMeanwhile) {
				t.Fatalf("the slow run past the grace: %+v %v, want ErrReissuedMeanwhile", b, berr)
			}
			if recs := records(t, st); len(recs) != 0 {
				t.Fatalf("the slow run left its record: %v", recs)
			}
		})
	}
}

// What someone who can write the store, without the root key, plants
// makes the prune keep more, never remove what matters: the role's
// current pair and the record of a re-issue not complete stay.
func TestPrunePlantedRecords(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	o.Fleet.Now = func() time.Time { return time.Now().Add(-time.Hour) } // the fleet's first pairs, an hour before
	bootstrap(t, o)
	boot := everything(t, st)
	first, err := at(st, 0).Reissue(ctx, pki.Developer)
	if err != nil {
		t.Fatal(err)
	}
	cur := everything(t, st)
	devPair := cur[names.ClientKey(pki.Developer)] + cur[names.ClientCert(pki.Developer)]
	curSerial, _ := pki.ParseCert([]byte(cur[names.ClientCert(pki.Developer)]))
	old := time.Now().Add(-72 * time.Hour)
	plant := func(name, value string) string {
		st.Set(name, value)
		st.SetTimes(name, old, old)
		return name
	}
	dir := names.ReissueDir() + "/"
	// The record a re-issue of the current certificate would claim: it
	// must stay (whoever planted it, it is what the next re-issue reads).
	forCurrent := plant(names.Reissue(pki.Developer, curSerial.SerialNumber.Text(16)), devPair)
	// Names that are not a record's: left alone.
	odd := []string{plant(dir+"developer-0"+curSerial.SerialNumber.Text(16), devPair), plant(dir+"nosuchrole-01", devPair),
		plant(dir+"developer-zz", devPair), plant(dir+"developer-", devPair), plant(dir+"Developer-01", devPair)}
	// A record's name holding no pair: kept as evidence.
	junk := plant(dir+"reader-1234", "not a pair")
	// A record's name for another developer serial holding a copy of
	// the current developer pair: removed, and only the record (the
	// role's key it copies stays).
	copyOfCurrent := plant(names.Reissue(pki.Developer, "abc123"), devPair)
	// The same copy named as an admin record: the admin certificate is
	// older than the record's, so it is not a completed re-issue: kept.
	crossRole := plant(names.Reissue(pki.Admin, "abc123"), devPair)
	for _, n := range records(t, st) {
		if !strings.HasPrefix(n, dir) {
			t.Fatalf("listed %s", n)
		}
		if n != forCurrent && !contains(odd, n) && n != junk && n != copyOfCurrent && n != crossRole {
			st.SetTimes(n, old, old) // the real record of the first re-issue
		}
	}
	before := everything(t, st)
	res := prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{})
	if after := everything(t, st); !maps.Equal(before, after) {
		t.Fatal("the prune changed a secret that is not a re-issue record")
	}
	left := records(t, st)
	for _, n := range append([]string{forCurrent, junk, crossRole}, odd...) {
		if !contains(left, n) {
			t.Errorf("%s was removed: %+v", n, fate(res, n))
		}
	}
	if contains(left, copyOfCurrent) || contains(left, names.Reissue(pki.Developer, hexOf(t, first.OldSerial))) {
		t.Errorf("a completed record stayed: %v %+v", left, res.Records)
	}
	if r := fate(res, forCurrent); !strings.Contains(r.Reason, "not complete") {
		t.Errorf("the record for the current certificate: %+v", r)
	}
	if r := fate(res, junk); !strings.Contains(r.Reason, "inspect") {
		t.Errorf("the junk record: %+v", r)
	}

	// A certificate and key the attacker made (not from the root) as the
	// role's current pair: the role's records all stay.
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	self, err := pki.NewCA(key, time.Now(), 48*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	rec := plant(names.Reissue(pki.Developer, "feed"), devPair)
	st.Set(names.ClientKey(pki.Developer), string(keyPEM))
	st.Set(names.ClientCert(pki.Developer), string(pki.EncodeCert(self)))
	st.SetTimes(names.ClientCert(pki.Developer), old, old)
	res = prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{})
	if r := fate(res, rec); r.Fate != certs.RecordKept || !strings.Contains(r.Reason, "verify") {
		t.Fatalf("under a planted developer certificate: %+v", r)
	}
	// The developer pair from before the re-issue put back (a rollback):
	// the record of the re-issue away from it is the current one again.
	st.Set(names.ClientKey(pki.Developer), boot[names.ClientKey(pki.Developer)])
	st.Set(names.ClientCert(pki.Developer), boot[names.ClientCert(pki.Developer)])
	st.SetTimes(names.ClientCert(pki.Developer), old, old)
	back := plant(names.Reissue(pki.Developer, hexOf(t, first.OldSerial)), devPair)
	res = prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{})
	if r := fate(res, back); r.Fate != certs.RecordKept {
		t.Fatalf("after a rollback, the record away from the current certificate: %+v", r)
	}
	if r := fate(res, rec); r.Fate != certs.RecordKept || !strings.Contains(r.Reason, "older than this record") {
		t.Fatalf("after a rollback, a record newer than the current certificate: %+v", r)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hexOf is a serial as a record's name holds it (SerialHex pads).
func hexOf(t *testing.T, serial string) string {
	t.Helper()
	n, err := pki.ParseSerial(serial)
	if err != nil {
		t.Fatal(err)
	}
	return n.Text(16)
}

// An operator's status notes the records past the grace, and names prune;
// after the prune the note is gone.
func TestStatusNotesReissueRecords(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	if _, err := at(st, 0).Reissue(ctx, pki.Developer); err != nil {
		t.Fatal(err)
	}
	note := func(ahead time.Duration) string {
		for _, n := range at(st, ahead).Status(ctx, certs.StatusOptions{}).Notices {
			if strings.Contains(n, "re-issue record") {
				return n
			}
		}
		return ""
	}
	if n := note(0); n != "" {
		t.Fatalf("a record within the grace noted: %s", n)
	}
	if n := note(certs.ReissueRecordGrace + time.Minute); !strings.Contains(n, "joblet certs prune") {
		t.Fatalf("a record past the grace: %q", n)
	}
	prune(t, at(st, certs.ReissueRecordGrace+time.Minute), certs.PruneOptions{})
	if n := note(certs.ReissueRecordGrace + time.Minute); n != "" {
		t.Fatalf("after the prune: %s", n)
	}
}

// A slow run that read the role's certificate, while two re-issues
// complete (the second revoking the first's certificate), finds the
// first's record and pair: written, it would make a revoked certificate
// the role's again. It sees the role's certificate changed, and writes
// nothing.
func TestReissueSlowRunDoesNotPutBackARevokedPair(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	slow := &slowClaim{MemoryStore: st, recordGate: newRecordGate()}
	var berr error
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, berr = at(slow, 0).Reissue(ctx, pki.Developer)
	}()
	<-slow.reached
	if _, err := at(st, 0).Reissue(ctx, pki.Developer); err != nil {
		t.Fatal(err)
	}
	c, err := at(st, 0).ReissueRevoke(ctx, pki.Developer)
	if err != nil {
		t.Fatal(err)
	}
	close(slow.release)
	<-done
	if !errors.Is(berr, certs.ErrReissuedMeanwhile) {
		t.Fatalf("the slow run: %v, want ErrReissuedMeanwhile", berr)
	}
	cur, _ := pki.ParseCert([]byte(everything(t, st)[names.ClientCert(pki.Developer)]))
	if pki.SerialHex(cur.SerialNumber) != c.NewSerial {
		t.Fatalf("the developer certificate is %s, want the last re-issue's %s", pki.SerialHex(cur.SerialNumber), c.NewSerial)
	}
	if len(records(t, st)) != 2 {
		t.Fatalf("records %v: the slow run removed one it did not create", records(t, st))
	}
}
