package server_test

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/server"
)

// check makes one call on cc (which connects it).
func check(t *testing.T, cc *grpc.ClientConn) error {
	t.Helper()
	_, err := healthpb.NewHealthClient(cc).Check(ctx(t), &healthpb.HealthCheckRequest{})
	return err
}

// waitClosed waits until the node closed cc (it leaves Ready: a client
// reconnects only for its next call).
func waitClosed(t *testing.T, cc *grpc.ClientConn, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for cc.GetState() == connectivity.Ready {
		if time.Now().After(deadline) {
			t.Fatalf("%s still open 10 s after the node should have closed it", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// security.maxConnections: a reader flood of cap+N authenticated
// connections closes the reader's connections idle longest, oldest first,
// skipping one with a stream open; an admin still connects and calls, and
// the flood that follows leaves the admin's connection alone.
func TestMaxConnectionsEvictsBiggestRoleIdle(t *testing.T) {
	const max = 8
	f := startNode(t, nil, func(s *config.Server) { s.Security.MaxConnections = max })
	reader := f.rnx.Nodes["reader"]
	var readers []*grpc.ClientConn
	for i := 0; i < max; i++ {
		cc := grpcConn(t, reader)
		if err := check(t, cc); err != nil {
			t.Fatalf("reader connection %d: %v", i, err)
		}
		readers = append(readers, cc)
	}
	// The oldest but one holds a stream: busy, never picked while idle
	// connections exist.
	held, drop := context.WithCancel(context.Background())
	defer drop()
	busy := readers[0]
	if err := watch(held, healthpb.NewHealthClient(busy)); err != nil {
		t.Fatal(err)
	}
	// Four more readers: each closes the reader's connection idle longest
	// (1, 2, 3, 4 in turn; 0 is busy, and its stream made it the most
	// recently active anyway).
	for i := 0; i < 4; i++ {
		cc := grpcConn(t, reader)
		if err := check(t, cc); err != nil {
			t.Fatalf("reader newcomer %d refused: %v", i, err)
		}
		waitClosed(t, readers[1+i], "the reader's connection idle longest")
		readers = append(readers, cc)
	}
	for i := 5; i < len(readers); i++ {
		if s := readers[i].GetState(); s != connectivity.Ready {
			t.Fatalf("reader connection %d went %v while older idle ones were there", i, s)
		}
	}
	// An admin connects and calls with the node at its cap.
	admin := grpcConn(t, f.rnx.Nodes["default"])
	if err := check(t, admin); err != nil {
		t.Fatalf("an admin at the cap: %v", err)
	}
	waitClosed(t, readers[5], "the reader's next idle connection")
	// A flood of 3×cap more readers: the admin's connection, idle and
	// holding less than its fair share, stays; so does the busy one.
	for i := 0; i < 3*max; i++ {
		cc := grpcConn(t, reader)
		if err := check(t, cc); err != nil {
			t.Fatalf("reader flood %d refused: %v", i, err)
		}
	}
	if s := admin.GetState(); s != connectivity.Ready {
		t.Fatalf("the admin's connection went %v under a reader flood", s)
	}
	if err := check(t, admin); err != nil {
		t.Fatalf("the admin's call after a reader flood: %v", err)
	}
	if s := busy.GetState(); s != connectivity.Ready {
		t.Fatalf("the reader connection holding a stream went %v while idle ones were there", s)
	}
	rec := httptest.NewRecorder()
	f.node.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`joblet_connections{role="admin"} 1`, `joblet_connections{role="reader"} 7`,
		`joblet_connections_evicted_total{role="reader"} 29`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(body, `joblet_connections_evicted_total{role="admin"}`) {
		t.Error("an admin connection was evicted")
	}
}

// The cap follows the open-file limit: three quarters of it, less the
// pending handshakes; a smaller configured value wins.
func TestConnLimitFor(t *testing.T) {
	for _, tc := range []struct {
		configured, pending int
		nofile              uint64
		want                int
	}{
		{4096, 128, 1024, 640},
		{4096, 128, 65536, 4096},
		{8, 128, 1024, 8},
		{4096, 128, 100, 16}, // a tiny limit still lets a few in
	} {
		if got := server.ConnLimitFor(tc.configured, tc.pending, tc.nofile); got != tc.want {
			t.Errorf("ConnLimitFor(%d, %d, %d) = %d, want %d", tc.configured, tc.pending, tc.nofile, got, tc.want)
		}
	}
}
