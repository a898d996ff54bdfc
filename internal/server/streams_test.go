package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/ehsaniara/joblet/internal/config"
)

// watch opens a health watch on h and reads its first answer.
func watch(ctx context.Context, h healthpb.HealthClient) error {
	s, err := h.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err == nil {
		_, err = s.Recv()
	}
	return err
}

// security.maxStreamsPerRole: a role's streams past the cap are refused at
// once with RESOURCE_EXHAUSTED naming the key, over all its connections;
// another role is not affected; a stream that ends, and a connection that
// closes, give their slots back.
func TestStreamsPerRole(t *testing.T) {
	f := startNode(t, nil, func(s *config.Server) { s.Security.MaxStreamsPerRole = 3 })
	reader := f.rnx.Nodes["reader"]
	first, second := grpcConn(t, reader), grpcConn(t, reader)
	held, drop := context.WithCancel(context.Background())
	defer drop()
	one, endOne := context.WithCancel(held)
	// Two streams on one connection (the first ends later), one on another.
	for i, s := range []struct {
		cx context.Context
		cc *grpc.ClientConn
	}{{one, first}, {held, first}, {held, second}} {
		if err := watch(s.cx, healthpb.NewHealthClient(s.cc)); err != nil {
			t.Fatalf("reader stream %d: %v", i+1, err)
		}
	}
	err := watch(ctx(t), healthpb.NewHealthClient(second))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "security.maxStreamsPerRole") {
		t.Fatalf("a reader's 4th stream: %v, want RESOURCE_EXHAUSTED naming security.maxStreamsPerRole", err)
	}
	if err := watch(ctx(t), healthpb.NewHealthClient(grpcConn(t, f.rnx.Nodes["default"]))); err != nil {
		t.Fatalf("an admin's stream while the reader is at its cap: %v", err)
	}
	// again retries a reader's stream until it opens (the slot comes back
	// when the node sees the stream or connection end).
	again := func(what string) {
		t.Helper()
		third := grpcConn(t, reader)
		deadline := time.Now().Add(10 * time.Second)
		for {
			err := watch(held, healthpb.NewHealthClient(third))
			if err == nil {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("after %s, a reader's stream is still refused: %v", what, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	endOne()
	again("one of its streams ended")
	second.Close()
	again("a connection holding one closed")
}

// security.maxConnectionIdle: a connection without a call that long is
// closed by the node (GOAWAY); one holding a stream is not.
func TestMaxConnectionIdle(t *testing.T) {
	f := startNode(t, nil, func(s *config.Server) { s.Security.MaxConnectionIdle = "300ms" })
	idle, busy := grpcConn(t, f.rnx.Nodes["reader"]), grpcConn(t, f.rnx.Nodes["reader"])
	if _, err := healthpb.NewHealthClient(idle).Check(ctx(t), &healthpb.HealthCheckRequest{}); err != nil {
		t.Fatal(err)
	}
	if err := watch(ctx(t), healthpb.NewHealthClient(busy)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for idle.GetState() == connectivity.Ready {
		if time.Now().After(deadline) {
			t.Fatal("an idle connection still open 10 s after security.maxConnectionIdle 300ms")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if s := busy.GetState(); s != connectivity.Ready {
		t.Fatalf("a connection holding a stream went %v", s)
	}
}
