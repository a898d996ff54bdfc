package certs_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

func TestReissueRevoke(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	res, err := (&certs.Fleet{Store: st, ClientLifetime: time.Hour}).ReissueRevoke(ctx, pki.Reader)
	if err != nil {
		t.Fatal(err)
	}
	if !res.Revoked || res.OldSerial == res.NewSerial || res.Role != "reader" {
		t.Fatalf("result %+v", res)
	}
	rep := (&certs.Fleet{Store: st, StoreDesc: "test"}).Status(ctx, certs.StatusOptions{WarnDays: 1})
	if len(rep.Revocations) != 1 || rep.Revocations[0].Serial != res.OldSerial || rep.Revocations[0].Reason != pki.RevocationReasons["superseded"] {
		t.Fatalf("the CRL lists %+v, want the old serial %s as superseded", rep.Revocations, res.OldSerial)
	}
}

// failingPut is a store whose writes of one name fail.
type failingPut struct {
	*storetest.MemoryStore
	name string
}

func (f failingPut) Put(ctx context.Context, name, value string) error {
	if name == f.name {
		return errors.New("store down")
	}
	return f.MemoryStore.Put(ctx, name, value)
}

func (f failingPut) Create(ctx context.Context, s secretstore.Secret) error {
	if s.Name == f.name {
		return errors.New("store down")
	}
	return f.MemoryStore.Create(ctx, s)
}

// The re-issue stands when the revocation fails; the error says so.
func TestReissueRevokeRevocationFails(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemoryStore()
	bootstrap(t, opts(t, mem))
	st := failingPut{MemoryStore: mem, name: names.CRL()}
	res, err := (&certs.Fleet{Store: st, ClientLifetime: time.Hour}).ReissueRevoke(ctx, pki.Developer)
	if !errors.Is(err, certs.ErrRevokeAfterReissue) || res == nil || res.Revoked {
		t.Fatalf("res %+v, err %v", res, err)
	}
	got, _ := mem.Get(ctx, []string{names.ClientCert(pki.Developer)})
	c, _ := pki.ParseCert([]byte(got[names.ClientCert(pki.Developer)]))
	if pki.SerialHex(c.SerialNumber) != res.NewSerial {
		t.Fatalf("stored serial %s, want the new %s", pki.SerialHex(c.SerialNumber), res.NewSerial)
	}
}
