package certs_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// versionStore adds versions named by id (Secrets Manager's
// ClientRequestToken) to the memory store: what a rotation function
// needs. Moving AWSCURRENT puts that version's value as the current one.
// (The real one, Secrets Manager's, is tested against moto in test/.)
type versionStore struct {
	*storetest.MemoryStore
	mu       sync.Mutex
	versions map[string]map[string]string
	labels   map[string]map[secretstore.Stage]string
}

var _ certs.VersionStore = (*versionStore)(nil)

func newVersionStore() *versionStore {
	return &versionStore{MemoryStore: storetest.NewMemoryStore(), versions: map[string]map[string]string{}, labels: map[string]map[secretstore.Stage]string{}}
}

func (v *versionStore) GetVersion(_ context.Context, name, id string) (string, bool, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	val, ok := v.versions[name][id]
	return val, ok, nil
}

func (v *versionStore) PutVersion(_ context.Context, name, id, value string, stage secretstore.Stage) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.versions[name] == nil {
		v.versions[name] = map[string]string{}
	}
	if old, ok := v.versions[name][id]; ok && old != value {
		return fmt.Errorf("put version %s of %s: %w", id, name, secretstore.ErrExist)
	}
	v.versions[name][id] = value
	v.label(name)[stage] = id
	return nil
}

func (v *versionStore) label(name string) map[secretstore.Stage]string {
	if v.labels[name] == nil {
		v.labels[name] = map[secretstore.Stage]string{secretstore.Current: "initial"}
	}
	return v.labels[name]
}

func (v *versionStore) Stages(_ context.Context, name string) (map[secretstore.Stage]string, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := map[secretstore.Stage]string{}
	for k, id := range v.label(name) {
		out[k] = id
	}
	return out, nil
}

func (v *versionStore) MoveStage(ctx context.Context, name string, label secretstore.Stage, id string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if id == "" {
		delete(v.label(name), label)
		return nil
	}
	if label == secretstore.Current && v.label(name)[label] != id {
		if err := v.MemoryStore.Put(ctx, name, v.versions[name][id]); err != nil {
			return err
		}
	}
	v.label(name)[label] = id
	return nil
}

// The rotation steps for the node-issuing CA, each run twice: one new key
// and one listing; a node renews from it after finishSecret. Then a role's
// pair. And what the function refuses.
func TestRotateSecretSteps(t *testing.T) {
	ctx := context.Background()
	st := newVersionStore()
	o := opts(t, st)
	bootstrap(t, o)
	fl := &certs.Fleet{Store: st, Log: o.Fleet.Log}
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	n := certs.Names{Prefix: "joblet"}
	const token = "token-1"
	oldKey, _ := st.Get(ctx, []string{n.NodeCAKey(), n.Bundle()})

	var bundle string
	for i, step := range []string{certs.RotationCreate, certs.RotationCreate, certs.RotationSet, certs.RotationTest, certs.RotationTest} {
		if _, err := fl.RotateSecretStep(ctx, st, n.NodeCAKey(), token, step); err != nil {
			t.Fatalf("%s: %v", step, err)
		}
		got, _ := st.Get(ctx, []string{n.NodeCAKey(), n.Bundle()})
		if got[n.NodeCAKey()] != oldKey[n.NodeCAKey()] {
			t.Fatalf("%s changed the current key", step)
		}
		if i == 0 {
			bundle = got[n.Bundle()]
		} else if got[n.Bundle()] != bundle {
			t.Fatalf("%s (run %d) signed the trust state again", step, i+1)
		}
	}
	for range 2 {
		if _, err := fl.RotateSecretStep(ctx, st, "arn:aws:secretsmanager:us-east-1:123456789012:secret:joblet/node-ca-key-AbCdEf", token, certs.RotationFinish); err != nil {
			t.Fatalf("finishSecret: %v", err)
		}
	}
	pending, _, _ := st.GetVersion(ctx, n.NodeCAKey(), token)
	got, _ := st.Get(ctx, []string{n.NodeCAKey(), n.NodeCACert()})
	if got[n.NodeCAKey()] != pending || pki.MatchesKey(mustCert(t, got[n.NodeCACert()]), mustParseKey(t, pending)) != nil {
		t.Fatal("after finishSecret the store's pair is not the rotation's")
	}
	if r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil || !r.Renewed {
		t.Fatalf("a node's refresh after the rotation: %+v %v", r, err)
	}
	after, _ := config.LoadServer(cfgPath)
	if _, chain, _ := pki.ParseChain([]byte(after.Security.ServerCert)); pki.MatchesKey(chain[0], mustParseKey(t, pending)) != nil {
		t.Fatal("the node does not serve from the rotated node-issuing CA")
	}

	// A role's pair.
	for _, step := range []string{certs.RotationCreate, certs.RotationCreate, certs.RotationSet, certs.RotationTest, certs.RotationFinish, certs.RotationFinish} {
		if _, err := fl.RotateSecretStep(ctx, st, n.ClientKey(pki.Developer), "token-2", step); err != nil {
			t.Fatalf("developer %s: %v", step, err)
		}
	}
	pair, _ := st.Get(ctx, []string{n.ClientKey(pki.Developer), n.ClientCert(pki.Developer)})
	c := mustCert(t, pair[n.ClientCert(pki.Developer)])
	if pki.MatchesKey(c, mustParseKey(t, pair[n.ClientKey(pki.Developer)])) != nil {
		t.Fatal("the developer pair does not match after its rotation")
	}
	if r, err := pki.RoleOf(c); err != nil || r != pki.Developer {
		t.Fatalf("the rotated certificate's role: %v %v", r, err)
	}

	// Refused.
	st.PutVersion(ctx, n.NodeCAKey(), "other", "x", secretstore.RotationPending)
	for what, call := range map[string][3]string{
		"another secret":            {n.CRL(), "t", certs.RotationCreate},
		"no token":                  {n.NodeCAKey(), "", certs.RotationCreate},
		"an unknown step":           {n.NodeCAKey(), "t", "rotateSecret"},
		"test before create":        {n.NodeCAKey(), "never-created", certs.RotationTest},
		"another rotation underway": {n.NodeCAKey(), "t3", certs.RotationCreate},
	} {
		if _, err := fl.RotateSecretStep(ctx, st, call[0], call[1], call[2]); !errors.Is(err, certs.ErrUsage) {
			t.Errorf("%s: %v, want a usage error", what, err)
		}
	}
}

func mustCert(t *testing.T, pem string) *x509.Certificate {
	t.Helper()
	c, err := pki.ParseCert([]byte(pem))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func mustParseKey(t *testing.T, pem string) crypto.Signer {
	t.Helper()
	k, err := pki.ParseKey([]byte(pem))
	if err != nil {
		t.Fatal(err)
	}
	return k
}
