package certs_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
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
	o := opts(t, st)
	bootstrap(t, o)
	fl := &certs.Fleet{Store: st, Log: o.Fleet.Log}
	key := certs.Names{Prefix: "joblet"}.CAKey()
	all := []string{certs.RotationCreate, certs.RotationSet, certs.RotationTest, certs.RotationFinish}
	run := func(token string, steps ...string) error {
		t.Helper()
		for _, step := range steps {
			if _, err := fl.RotateSecretStep(ctx, st, key, token, step); err != nil {
				return err
			}
		}
		return nil
	}
	phase := func() *certs.RotationStatus {
		t.Helper()
		s, err := fl.RotationStatus(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}

	if err := run("r1", all...); err != nil {
		t.Fatalf("the begin run: %v", err)
	}
	dropped := phase().Pending
	// The promote run waits (no node directory): Secrets Manager retries it.
	if err := run("r2", certs.RotationCreate); !errors.Is(err, certs.ErrNotReady) {
		t.Fatalf("the promote run: %v, want ErrNotReady", err)
	}
	if _, err := fl.AbortRotation(ctx); err != nil {
		t.Fatal(err)
	}
	for _, token := range []string{"r2", "r3"} { // the retry, the next scheduled run
		err := run(token, all...)
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
