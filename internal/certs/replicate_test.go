package certs_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// replicating is an in-memory store that replicates by recording the names.
type replicating struct {
	*storetest.MemoryStore
	got [][]string
}

func (r *replicating) Replicate(_ context.Context, names []string) error {
	r.got = append(r.got, names)
	return nil
}

func TestReplicate(t *testing.T) {
	ctx := context.Background()
	st := &replicating{MemoryStore: storetest.NewMemoryStore()}
	if _, err := (&certs.Fleet{Store: st}).Replicate(ctx); err == nil {
		t.Fatal("an empty store replicated")
	}
	bootstrap(t, opts(t, st))
	names, err := (&certs.Fleet{Store: st}).Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := names0(); !slices.Equal(names, want) || len(st.got) != 1 || !slices.Equal(st.got[0], want) {
		t.Fatalf("replicated %v (calls %v), want %v", names, st.got, want)
	}
	// The CRL, once created, is replicated too; other prefixes are not.
	c, _ := pki.ParseSerial("1234")
	if _, err := (&certs.Fleet{Store: st}).Revoke(ctx, c, 0); err != nil {
		t.Fatal(err)
	}
	names, err = (&certs.Fleet{Store: st, Prefix: "joblet"}).ReplicationTargets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(names, "joblet/crl") || len(names) != len(names0())+1 {
		t.Fatalf("targets after a revocation: %v", names)
	}
	if names, _ := (&certs.Fleet{Store: st, Prefix: "other"}).ReplicationTargets(ctx); len(names) != 0 {
		t.Fatalf("another prefix: %v", names)
	}
}

// names0 are a fresh fleet's secrets: the CA pair, each role's pair, the
// node-issuing pair and the signed trust state.
func names0() []string { return append(names.All(), names.Bundle()) }

func TestReplicateNeedsAReplicator(t *testing.T) {
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	if _, err := (&certs.Fleet{Store: st}).Replicate(context.Background()); !errors.Is(err, certs.ErrUsage) {
		t.Fatalf("err = %v, want ErrUsage", err)
	}
}

// A replica made in the middle of a rotation holds everything a node reads
// there: the cross certificate a begin writes included.
func TestReplicateMidRotationHoldsWhatANodeReads(t *testing.T) {
	ctx := context.Background()
	st := &replicating{MemoryStore: storetest.NewMemoryStore()}
	bootstrap(t, opts(t, st))
	fl := &certs.Fleet{Store: st}
	if _, err := fl.BeginRotation(ctx, certs.CAKeyRef{}); err != nil {
		t.Fatal(err)
	}
	names, err := fl.Replicate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := certs.Names{Prefix: certs.DefaultPrefix}
	vals, err := st.Get(ctx, n.Node())
	if err != nil {
		t.Fatal(err)
	}
	if vals[n.CACross()] == "" {
		t.Fatalf("begin wrote no %s: %v", n.CACross(), vals)
	}
	for name := range vals {
		if !slices.Contains(names, name) {
			t.Errorf("a node reads %s, which was not replicated (replicated %v)", name, names)
		}
	}
}
