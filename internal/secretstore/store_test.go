package secretstore_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

func TestMemoryStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) secretstore.Store { return storetest.NewMemoryStore() }, "joblet")
}

func TestDirStoreContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) secretstore.Store {
		s, err := secretstore.NewDirStore(filepath.Join(t.TempDir(), "store"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}, "my-app/joblet")
}

func TestDirStoreModesAndPrevious(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	s, err := secretstore.NewDirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Create(ctx, secretstore.Secret{Name: "joblet/ca-key", Value: "k1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "joblet/ca-key", "k2"); err != nil {
		t.Fatal(err)
	}
	prevs, err := s.GetStage(ctx, []string{"joblet/ca-key"}, secretstore.Previous)
	if prev := prevs["joblet/ca-key"]; err != nil || prev != "k1" {
		t.Fatalf("previous = %q, %v; want k1", prev, err)
	}
	for path, want := range map[string]os.FileMode{root: 0o700, filepath.Join(root, "joblet"): 0o700,
		filepath.Join(root, "joblet", "ca-key"): 0o600, filepath.Join(root, "joblet", "ca-key.previous"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	// No temp files are left behind by create or put.
	entries, _ := os.ReadDir(filepath.Join(root, "joblet"))
	if len(entries) != 2 {
		t.Errorf("store dir holds %d entries, want ca-key and ca-key.previous only", len(entries))
	}
}

func TestValidatePrefix(t *testing.T) {
	good := []string{"joblet", "my-app/joblet", "a_b+c=d.e@f-g", "x/y/z"}
	bad := []string{"", "/joblet", "joblet/", "a//b", "a b", "joblet/../etc", "..", "jo$blet", "a/./b", "jöblet"}
	for _, p := range good {
		if err := secretstore.ValidatePrefix(p); err != nil {
			t.Errorf("ValidatePrefix(%q) = %v, want ok", p, err)
		}
	}
	for _, p := range bad {
		if err := secretstore.ValidatePrefix(p); err == nil {
			t.Errorf("ValidatePrefix(%q) accepted an invalid prefix", p)
		}
	}
}

// A directory store lists regular files only: a link planted in the
// folder (to a role's key, say) is not a secret of it, so nothing listed
// leads a remover outside; a folder that is itself a link is refused.
func TestDirStoreListSkipsLinks(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	s, err := secretstore.NewDirStore(root)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, n := range []string{"joblet/client-key", "joblet/client-reissue/admin-1"} {
		if err := s.Create(ctx, secretstore.Secret{Name: n, Value: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(filepath.Join(root, "joblet", "client-key"), filepath.Join(root, "joblet", "client-reissue", "admin-2")); err != nil {
		t.Fatal(err)
	}
	got, err := s.List(ctx, "joblet/client-reissue")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Name != "joblet/client-reissue/admin-1" {
		t.Fatalf("listed %+v, want admin-1 alone", got)
	}
	if err := os.Symlink(filepath.Join(root, "joblet"), filepath.Join(root, "joblet", "linked")); err != nil {
		t.Fatal(err)
	}
	if got, err := s.List(ctx, "joblet/linked"); err == nil {
		t.Fatalf("a linked folder was listed: %+v", got)
	}
}
