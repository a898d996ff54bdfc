package certs_test

import (
	"context"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// A node's CRL is taken only when the config's trust verifies it and it is
// newer than the one held; the file keeps its mode.
func TestAdoptCRL(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	other := opts(t, storetest.NewMemoryStore()) // another fleet
	bootstrap(t, other)
	path := filepath.Join(o.Home, "config", "rnx-config.yml")
	os.Chmod(path, 0o640)
	crlNow := func(f *certs.Fleet, serial int64) []byte {
		t.Helper()
		if _, err := f.Revoke(ctx, big.NewInt(serial), 0); err != nil {
			t.Fatal(err)
		}
		v, _ := f.Store.Get(ctx, []string{"joblet/crl"})
		return []byte(v["joblet/crl"])
	}
	first := crlNow(&o.Fleet, 1001)
	second := crlNow(&o.Fleet, 1002)

	updated, err := certs.AdoptCRLFile(path, "default", second)
	if err != nil || !slices.Equal(updated, []string{"default", "developer", "maintainer", "reader"}) {
		t.Fatalf("a newer CRL: updated %v, %v", updated, err)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %04o after the rewrite, want 0640 kept", fi.Mode().Perm())
	}
	// An older one (a node that has not refreshed, or one rolling back).
	if updated, err := certs.AdoptCRLFile(path, "default", first); err != nil || len(updated) != 0 {
		t.Fatalf("an older CRL: updated %v, %v", updated, err)
	}
	cfg, _ := config.LoadRnx(path)
	if cfg.Nodes["reader"].CRL != string(second) {
		t.Fatal("the config does not hold the newest CRL")
	}
	// One no CA of the config signed (a node of another fleet, or forged).
	foreign := crlNow(&other.Fleet, 1003)
	_, err = certs.AdoptCRL(cfg, "default", foreign)
	if err == nil || !strings.Contains(err.Error(), "not signed by a trusted CA") {
		t.Fatalf("a foreign CRL: %v", err)
	}
	// An entry of another fleet keeps its own.
	ocfg, _ := config.LoadRnx(filepath.Join(other.Home, "config", "rnx-config.yml"))
	cfg.Nodes["elsewhere"] = ocfg.Nodes["default"]
	cfg.Nodes["elsewhere"].IsDefault = false
	third := crlNow(&o.Fleet, 1004)
	updated, err = certs.AdoptCRL(cfg, "default", third)
	if err != nil || slices.Contains(updated, "elsewhere") || len(updated) != 4 {
		t.Fatalf("updated %v, %v", updated, err)
	}
}
