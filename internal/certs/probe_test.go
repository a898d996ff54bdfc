package certs_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/internal/server"
)

// A real node, asked over mutual TLS with the operator's rnx config, serves
// a certificate from the current CA; a closed port is reported unreachable;
// after rotate-ca begin+promote the node still serves from the old CA.
func TestProbeNodes(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	o.ServerAddress, o.NodeID = "127.0.0.1", "node-probe"
	bootstrap(t, o)
	cfg, err := config.LoadServer(filepath.Join(o.Home, "config", "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Shutdown(ctx)
	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedAddr := closed.Addr().String()
	closed.Close()

	info, err := client.DialNodeInfo(filepath.Join(o.Home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	rot := rotation{f: &certs.Fleet{Store: st}}
	rs, err := rot.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	reps := certs.ProbeNodes(ctx, []string{l.Addr().String(), " ", closedAddr}, rs.Current.Fingerprint, info, rs.Outgoing(), time.Time{})
	if len(reps) != 2 {
		t.Fatalf("%d reports, want 2 (the blank address skipped): %+v", len(reps), reps)
	}
	if r := reps[0]; !r.Current || r.NodeID != "node-probe" || r.IssuerSHA256 != rs.Current.Fingerprint || !strings.Contains(r.Summary, "from the current CA") {
		t.Errorf("live node: %+v", r)
	}
	if r := reps[1]; r.Current || !strings.HasPrefix(r.Summary, "unreachable: ") || r.Address != closedAddr {
		t.Errorf("closed port: %+v", r)
	}

	// After a promote the node has not renewed yet: it serves from another CA.
	if _, err := rot.Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if rs, err = rot.Promote(ctx); err != nil {
		t.Fatal(err)
	}
	if len(rs.Outgoing()) != 1 || rs.Outgoing()[0] == rs.Current.KeyID {
		t.Fatalf("outgoing CAs after promote: %v", rs.Outgoing())
	}
	// The probe's own config still holds the old CA's client certificate:
	// the node counts it among the outgoing CA's clients.
	reps = certs.ProbeNodes(ctx, []string{l.Addr().String()}, rs.Current.Fingerprint, info, rs.Outgoing(), time.Now().Add(-time.Minute))
	if r := reps[0]; r.Current || !strings.Contains(r.Summary, "still serves a certificate from another CA") || r.OldCAClients < 1 ||
		!strings.Contains(r.Summary, "client certificates of the outgoing CA") {
		t.Errorf("after promote: %+v", r)
	}
	if reps = certs.ProbeNodes(ctx, []string{l.Addr().String()}, rs.Current.Fingerprint, info, rs.Outgoing(), time.Now().Add(time.Minute)); reps[0].OldCAClients != 0 {
		t.Errorf("handshakes before the window counted: %+v", reps[0])
	}
}

func TestDialNodeInfoNeedsConfig(t *testing.T) {
	if _, err := client.DialNodeInfo(filepath.Join(t.TempDir(), "missing.yml")); err == nil || !strings.Contains(err.Error(), "operator rnx config") {
		t.Fatalf("err = %v", err)
	}
}

// finish refuses while a node that answered serves another CA's
// certificate; a node that did not answer is a warning, not a veto.
func TestFinishGate(t *testing.T) {
	cur := certs.NodeReport{Address: "a:1", IssuerSHA256: "new", Current: true, Summary: "n1: serves a certificate from the current CA"}
	old := certs.NodeReport{Address: "b:1", IssuerSHA256: "old", Summary: "n2: still serves a certificate from another CA (old)"}
	gone := certs.NodeReport{Address: "c:1", Summary: "unreachable: connection refused"}
	if w, err := certs.FinishGate([]certs.NodeReport{cur, gone}); err != nil || len(w) != 1 || !strings.Contains(w[0], "c:1") {
		t.Fatalf("current and unreachable: %q, %v", w, err)
	}
	if _, err := certs.FinishGate([]certs.NodeReport{cur, old}); err == nil || !strings.Contains(err.Error(), "1 of 2 nodes") || !strings.Contains(err.Error(), "b:1") || !strings.Contains(err.Error(), "--force") {
		t.Fatalf("one node behind: %v", err)
	}
	seen := cur
	seen.Address, seen.OldCAClients, seen.OldCALastSeen = "d:1", 3, time.Now()
	if _, err := certs.FinishGate([]certs.NodeReport{cur, seen}); err == nil || !strings.Contains(err.Error(), "clients still present certificates of the outgoing CA") || !strings.Contains(err.Error(), "d:1 (3,") {
		t.Fatalf("a node seeing old-CA clients: %v", err)
	}
}

// In the begun phase the CA a finish will stop trusting is the current
// one: a config refreshed after begin (a certificate of the pending CA,
// reaching a node that trusts only the old CA through the cross
// certificate) counts as new, not as a client of the outgoing CA; the probe
// says whether each node already trusts the pending CA.
func TestProbeBegunPhase(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	o.ServerAddress, o.NodeID = "127.0.0.1", "node-begun"
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	cfg, err := config.LoadServer(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(cfg, server.Options{ConfigPath: cfgPath}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Shutdown(ctx)
	addr := []string{l.Addr().String()}

	rot := rotation{f: &certs.Fleet{Store: st}}
	rs, err := rot.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out := rs.Outgoing(); len(out) != 1 || out[0] != rs.Current.KeyID || rs.Pending == nil {
		t.Fatalf("outgoing CAs in the begun phase: %v, want the current CA %s only", out, rs.Current.KeyID)
	}
	// A config refreshed after begin: the pending CA's client certificate.
	refreshed := filepath.Join(t.TempDir(), "rnx-config.yml")
	b, _ := os.ReadFile(filepath.Join(o.Home, "config", "rnx-config.yml"))
	os.WriteFile(refreshed, b, 0o600)
	if _, err := rot.f.RefreshClientConfig(ctx, refreshed, ""); err != nil {
		t.Fatal(err)
	}
	var since time.Time // every handshake: none of the old CA's yet
	info, err := client.DialNodeInfo(refreshed)
	if err != nil {
		t.Fatal(err)
	}
	reps := certs.ProbeRotation(ctx, addr, rs, info, since)
	if r := reps[0]; r.OldCAClients != 0 || r.TrustsPendingCA == nil || *r.TrustsPendingCA || !strings.Contains(r.Summary, "does not trust the pending CA yet") {
		t.Fatalf("before the node refreshed: %+v", r)
	}
	// The node takes the new trust (a re-run of bootstrap, then a reload).
	bootstrap(t, o)
	if err := srv.Reload(); err != nil {
		t.Fatal(err)
	}
	reps = certs.ProbeRotation(ctx, addr, rs, info, since)
	if r := reps[0]; r.OldCAClients != 0 || r.TrustsPendingCA == nil || !*r.TrustsPendingCA || !strings.Contains(r.Summary, "trusts the pending CA") {
		t.Fatalf("after the node refreshed: %+v", r)
	}
	// A client still on the old CA is one of the outgoing CA.
	old, _ := client.DialNodeInfo(filepath.Join(o.Home, "config", "rnx-config.yml"))
	old(ctx, addr[0])
	if r := certs.ProbeRotation(ctx, addr, rs, info, since)[0]; r.OldCAClients < 1 {
		t.Fatalf("an old-CA client not counted: %+v", r)
	}
}
