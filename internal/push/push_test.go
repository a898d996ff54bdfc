package push_test

import (
	"context"
	"io"
	"log/slog"
	"math/big"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/internal/push"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/internal/server"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// node bootstraps a node of the fleet in st and serves it on 127.0.0.1;
// it returns the node's address and the fleet's admin rnx config.
func node(t *testing.T, st *storetest.MemoryStore) (string, *config.Rnx) {
	t.Helper()
	home := t.TempDir()
	fl := &certs.Fleet{Store: st, StoreDesc: "memory", Log: quiet}
	if _, err := fl.Bootstrap(context.Background(), certs.BootstrapOptions{Home: home, ListenAddress: "127.0.0.1", ServerAddress: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.LoadServer(filepath.Join(home, "config", "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Jobs.Dir = filepath.Join(home, "jobs")
	rnx, err := config.LoadRnx(filepath.Join(home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(cfg, server.Options{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	return l.Addr().String(), rnx
}

// A push reports, node by node, who took the CRL and why the others did
// not: a node of the fleet takes it (and again: it holds it), a node of
// another fleet refuses the connection, an address where nothing listens
// is unreachable.
func TestPushSaysWhoTookIt(t *testing.T) {
	st := storetest.NewMemoryStore()
	a, admin := node(t, st)
	b, _ := node(t, st)
	stranger, _ := node(t, storetest.NewMemoryStore())
	closed, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	nothing := closed.Addr().String()
	closed.Close()

	fl := &certs.Fleet{Store: st, StoreDesc: "memory", Log: quiet}
	if _, err := fl.Revoke(context.Background(), big.NewInt(0xabc), 1); err != nil {
		t.Fatal(err)
	}
	crl, err := fl.StoredCRL(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	dir, err := nodedir.FromList("a=" + a + ",b=" + b + ",x=" + stranger + "," + nothing)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	r := push.CRL(ctx, dir, admin, "", crl)
	if r.Took() != 2 || len(r.Missed()) != 2 {
		t.Fatalf("took %d, missed %v: want 2 and the other fleet's node and the closed port\n%s", r.Took(), r.Missed(), r.Text("the CRL"))
	}
	text := r.Text("the CRL")
	for _, want := range []string{"pushed to 2 of 4 nodes", "x (" + stranger + ")", nothing} {
		if !strings.Contains(text, want) {
			t.Errorf("the report does not say %q:\n%s", want, text)
		}
	}
	for _, m := range r.Missed() {
		if m.Why == "" {
			t.Errorf("%s missed without a reason", m.Address)
		}
	}
	t.Logf("%s", text)
	if again := push.CRL(ctx, dir, admin, "", crl); again.Took() != 2 {
		t.Fatalf("pushing the same CRL again: %s", again.Text("the CRL"))
	}
}
