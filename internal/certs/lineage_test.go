package certs_test

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// lineageStore checks, after every write it lets through, that the store
// holds one CA lineage: the current CA and each CA of the trust bundle is
// the first CA or has a cross certificate, already written, by a CA of the
// lineage. Write number failAt fails: before it is made ("unreachable") or,
// with applied, after ("answer cut").
type lineageStore struct {
	*storetest.MemoryStore
	t       *testing.T
	lineage map[string]*x509.Certificate
	crosses []*x509.Certificate
	writes  int
	failAt  int
	applied bool
	step    string
	armed   bool // from the fleet's creation on
}

var errInjected = fmt.Errorf("injected store fault: %w", secretstore.ErrTemporary)

func (s *lineageStore) write(name, value string, do func() error) error {
	s.writes++
	if s.writes == s.failAt && !s.applied {
		return errInjected
	}
	if err := do(); err != nil {
		return err
	}
	if name == names.CACross() {
		if c, err := pki.ParseCert([]byte(value)); err == nil {
			s.crosses = append(s.crosses, c)
		}
	}
	if s.armed {
		s.check(name)
	}
	if s.writes == s.failAt {
		return errInjected
	}
	return nil
}

func (s *lineageStore) check(after string) {
	s.t.Helper()
	v, _ := s.MemoryStore.Get(context.Background(), []string{names.CACert(), names.Bundle()})
	cas, err := pki.ParseCerts([]byte(v[names.CACert()]))
	if err != nil {
		s.t.Fatalf("%s, write %d (%s): %v", s.step, s.writes, after, err)
	}
	// The bundle is the signed trust state: its roots (read, not verified:
	// what is judged is what the store says is trusted).
	if b := []byte(v[names.Bundle()]); pki.IsSignedTrust(b) {
		t, err := pki.PeekTrust(b, names.Prefix)
		if err != nil {
			s.t.Fatalf("%s, write %d (%s): %v", s.step, s.writes, after, err)
		}
		cas = append(cas, t.RootCerts()...)
	} else if more, err := pki.ParseCerts(b); err == nil {
		cas = append(cas, more...)
	}
	if s.lineage == nil {
		s.lineage = map[string]*x509.Certificate{pki.Fingerprint(cas[0]): cas[0]}
	}
	for joined := true; joined; {
		joined = false
		for _, ca := range cas {
			if s.lineage[pki.Fingerprint(ca)] != nil {
				continue
			}
			for _, cross := range s.crosses {
				for _, parent := range s.lineage {
					if pki.SameKey(cross, ca) && cross.CheckSignatureFrom(parent) == nil {
						s.lineage[pki.Fingerprint(ca)], joined = ca, true
					}
				}
			}
		}
	}
	for _, ca := range cas {
		if s.lineage[pki.Fingerprint(ca)] == nil {
			s.t.Fatalf("%s, after write %d (%s): CA %s is current or trusted with no cross certificate from the lineage", s.step, s.writes, after, pki.Fingerprint(ca)[:16])
		}
	}
}

func (s *lineageStore) Create(ctx context.Context, sec secretstore.Secret) error {
	return s.write(sec.Name, sec.Value, func() error { return s.MemoryStore.Create(ctx, sec) })
}
func (s *lineageStore) Put(ctx context.Context, name, value string) error {
	return s.write(name, value, func() error { return s.MemoryStore.Put(ctx, name, value) })
}
func (s *lineageStore) PutPending(ctx context.Context, name, value string) error {
	return s.write(name, value, func() error { return s.MemoryStore.PutPending(ctx, name, value) })
}
func (s *lineageStore) Promote(ctx context.Context, name string) error {
	return s.write(name, "", func() error { return s.MemoryStore.Promote(ctx, name) })
}
func (s *lineageStore) Demote(ctx context.Context, name string) error {
	return s.write(name, "", func() error { return s.MemoryStore.Demote(ctx, name) })
}
func (s *lineageStore) DropPending(ctx context.Context, name string) error {
	return s.write(name, "", func() error { return s.MemoryStore.DropPending(ctx, name) })
}

// The chaos run's invariant "one CA lineage" holds at every write of the
// rotation steps, in the orders the run takes them (begin, abort from begun
// and from promoted, begin again, promote, finish), and when any one write
// fails and the step is run again: a CA
// enters the trust bundle (begin) or becomes current (promote) only after
// its cross certificate is written.
func TestRotationKeepsOneLineageAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	// Each step and the phase it leaves.
	steps := []struct {
		name  string
		phase certs.Phase
	}{{"begin", certs.PhaseBegun}, {"abort", certs.PhaseStable}, {"begin", certs.PhaseBegun}, {"promote", certs.PhasePromoted},
		{"abort", certs.PhaseBegun}, {"abort", certs.PhaseStable}, {"begin", certs.PhaseBegun}, {"promote", certs.PhasePromoted},
		{"abort", certs.PhaseBegun}, {"promote", certs.PhasePromoted}, {"finish", certs.PhaseStable}, {"begin", certs.PhaseBegun}}
	// ends[i]: the writes made by the end of step i, in a run with no
	// failure.
	var ends []int
	run := func(failAt int, applied bool) (writes int) {
		st := &lineageStore{MemoryStore: storetest.NewMemoryStore(), t: t}
		o := opts(t, st)
		bootstrap(t, o)
		st.check("bootstrap")
		st.writes, st.failAt, st.applied, st.armed = 0, failAt, applied, true
		r := rotation{f: &certs.Fleet{Store: st, Log: o.Log}}
		do := map[string]func(context.Context) (*certs.RotationStatus, error){"begin": r.Begin, "promote": r.Promote, "abort": r.Abort, "finish": r.Finish}
		for i, step := range steps {
			if failAt > 0 && i > 0 && ends[i-1] >= failAt {
				break // the failed step and the one after it are done
			}
			st.step = fmt.Sprintf("step %d (%s), write %d failing (applied %v)", i+1, step.name, failAt, applied)
			if _, err := do[step.name](ctx); err != nil {
				if !errors.Is(err, errInjected) {
					t.Fatalf("%s: %v", st.step, err)
				}
				// The operator runs it again; when the failed write was its
				// last, the step is done and may say so with an error ("no
				// rotation in progress"). An abort steps back one phase per
				// run: run again after its last writes from promoted, it
				// may step back twice, to stable, which a begin (of the same
				// new CA) undoes.
				_, err := do[step.name](ctx)
				s, serr := r.Status(ctx)
				if serr == nil && step.name == "abort" && step.phase == certs.PhaseBegun && s.Phase == certs.PhaseStable {
					_, err = r.Begin(ctx)
					s, serr = r.Status(ctx)
				}
				if serr != nil || s.Phase != step.phase || s.Interrupted {
					t.Fatalf("%s, run again: %v; then status %+v, %v", st.step, err, s, serr)
				}
			}
			if failAt == 0 {
				ends = append(ends, st.writes)
			}
		}
		return st.writes
	}
	// Write N failing before it is made leaves the store write N-1 failing
	// after it was made leaves: the "answer cut" runs cover both. A run
	// stops after the step that follows the failed one: from there on it
	// takes the steps of the run with no failure, from the same phase.
	total := run(0, false)
	for at := 1; at <= total; at++ {
		run(at, true)
	}
	t.Logf("%d writes, each failing after it was made", total)
}
