package certs_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

func rootOf(t *testing.T, st *storetest.MemoryStore) *pki.Pin {
	t.Helper()
	v, _ := st.Get(context.Background(), []string{names.CACert()})
	c, err := pki.ParseCert([]byte(v[names.CACert()]))
	if err != nil {
		t.Fatal(err)
	}
	p := pki.PinOf(c)
	return &p
}

// A pinned join goes on only with the pinned root (or, in a rotation, the
// root that cross-signed the current one), never creates a fleet, and
// writes nothing when refused; an unpinned first join says it trusted
// what it found, once.
func TestPinnedJoin(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	// An empty store: a pinned node creates nothing.
	other := storetest.NewMemoryStore()
	bootstrap(t, opts(t, other))
	foreign := rootOf(t, other)
	o := opts(t, st)
	o.Pin = foreign
	if _, err := boot(ctx, o); !errors.Is(err, certs.ErrPinMismatch) || !strings.Contains(err.Error(), "holds no usable root") {
		t.Fatalf("pinned join of an empty store: %v", err)
	}
	if v, _ := st.Get(ctx, names.All()); len(v) != 0 {
		t.Fatalf("a refused pinned join wrote %d secrets", len(v))
	}

	if _, err := (&certs.Fleet{Store: st}).Init(ctx, certs.InitOptions{Dir: t.TempDir(), Address: "lb:50051"}); err != nil {
		t.Fatal(err)
	}
	root := rootOf(t, st)
	o = opts(t, st)
	o.Pin = foreign
	_, err := boot(ctx, o)
	if !errors.Is(err, certs.ErrPinMismatch) || !strings.Contains(err.Error(), root.String()) || !strings.Contains(err.Error(), foreign.String()) {
		t.Fatalf("a join pinned to another root: %v", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(o.Home, "config")); len(entries) != 0 {
		t.Fatalf("a refused join wrote %d files", len(entries))
	}
	fl := &certs.Fleet{Store: st, Pin: foreign}
	if _, err := fl.ClientNode(ctx, pki.Reader, "lb:50051"); !errors.Is(err, certs.ErrPinMismatch) {
		t.Fatalf("a client config pinned to another root: %v", err)
	}

	// The right pin: one store call, as without it.
	counted := &countingStore{Store: st}
	o = opts(t, counted)
	o.Pin = root
	res := bootstrap(t, o)
	if n := counted.gets.Load(); n != 1 {
		t.Fatalf("a pinned join made %d store reads, want 1", n)
	}
	for _, w := range res.Warnings {
		if strings.Contains(w, "NO PIN") {
			t.Fatalf("a pinned join warned: %s", w)
		}
	}
	fl.Pin = root
	if _, err := fl.ClientNode(ctx, pki.Reader, "lb:50051"); err != nil {
		t.Fatal(err)
	}

	// Unpinned: said once, at the first join only.
	o = opts(t, st)
	if !warned(bootstrap(t, o), "NO PIN") {
		t.Fatal("an unpinned first join did not say it trusted what it found")
	}
	if warned(bootstrap(t, o), "NO PIN") {
		t.Fatal("a re-run of a joined node warned again")
	}

	// A rotation: the outgoing root's pin still admits a join while the
	// cross certificate vouches for the new root; a pin of neither does not.
	op := &certs.Fleet{Store: st, Log: o.Log}
	if _, err := op.BeginRotation(ctx, certs.CAKeyRef{}); err != nil {
		t.Fatal(err)
	}
	if _, err := op.PromoteRotation(ctx); err != nil {
		t.Fatal(err)
	}
	if *rootOf(t, st) == *root {
		t.Fatal("the promote did not change the root")
	}
	o = opts(t, st)
	o.Pin = root
	bootstrap(t, o)
	o = opts(t, st)
	o.Pin = foreign
	if _, err := boot(ctx, o); !errors.Is(err, certs.ErrPinMismatch) {
		t.Fatalf("a foreign pin during a rotation: %v", err)
	}
	// After finish the outgoing root is no longer trusted, but its pin
	// still admits a join: the signed trust state's lineage (the cross
	// certificate it kept) reaches the new root from it. A foreign pin
	// still does not.
	if _, err := op.FinishRotation(ctx); err != nil {
		t.Fatal(err)
	}
	o = opts(t, st)
	o.Pin = root
	if _, err := boot(ctx, o); err != nil {
		t.Fatalf("the outgoing root's pin after finish: %v", err)
	}
	o = opts(t, st)
	o.Pin = foreign
	if _, err := boot(ctx, o); !errors.Is(err, certs.ErrPinMismatch) {
		t.Fatalf("a foreign pin after finish: %v", err)
	}
	o = opts(t, st)
	o.Pin = rootOf(t, st)
	bootstrap(t, o)
}

func warned(r *certs.Result, what string) bool {
	for _, w := range r.Warnings {
		if strings.Contains(w, what) {
			return true
		}
	}
	return false
}
