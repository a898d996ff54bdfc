package client

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

func TestRetryable(t *testing.T) {
	broken := status.Error(codes.Unavailable, "connection closed before server preface received")
	for _, c := range []struct {
		name string
		err  error
		want bool
	}{
		{"connection broke", broken, true},
		{"explained by the node's address", fmt.Errorf("node x: %w", broken), true},
		{"nothing listening", &ExplainedError{Hint: "nothing is listening there", Err: status.Error(codes.Unavailable, "connect: connection refused"), transient: true}, true},
		{"certificate refused", &ExplainedError{Hint: "the server rejected this client certificate", Err: status.Error(codes.Unavailable, "remote error: tls: bad certificate")}, false},
		{"refused by the node", status.Error(codes.Unauthenticated, "refused: revoked"), false},
		{"denied", status.Error(codes.PermissionDenied, "denied"), false},
		{"deadline", status.Error(codes.DeadlineExceeded, "deadline"), false},
		{"not grpc", errors.New("config"), false},
	} {
		if got := Retryable(c.err); got != c.want {
			t.Errorf("%s: Retryable = %v, want %v", c.name, got, c.want)
		}
	}
	if !transient("dial tcp 127.0.0.1:1: connect: connection refused") || transient("tls: bad certificate") {
		t.Error("transient: only a refused connection")
	}
}

// Retry dials anew for every attempt, stops at the first success or
// non-retryable failure, and at attempts.
func TestRetry(t *testing.T) {
	dials := 0
	dial := func() (*Conn, error) {
		dials++
		cc, err := grpc.NewClient("127.0.0.1:1", grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return nil, err
		}
		return &Conn{cc: cc}, nil
	}
	script := func(errs ...error) func(*Conn) error {
		i := 0
		return func(*Conn) error { e := errs[min(i, len(errs)-1)]; i++; return e }
	}
	broken := status.Error(codes.Unavailable, "connection reset")
	for _, c := range []struct {
		name      string
		read      func(*Conn) error
		wantDials int
		wantErr   bool
	}{
		{"first try", script(nil), 1, false},
		{"after two broken connections", script(broken, broken, nil), 3, false},
		{"always broken", script(broken), ReadAttempts, true},
		{"refused: no retry", script(status.Error(codes.PermissionDenied, "denied")), 1, true},
	} {
		dials = 0
		err := Retry(context.Background(), ReadAttempts, dial, c.read)
		if dials != c.wantDials || (err != nil) != c.wantErr {
			t.Errorf("%s: %d dials, err %v; want %d dials, error %v", c.name, dials, err, c.wantDials, c.wantErr)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dials = 0
	if err := Retry(ctx, ReadAttempts, dial, script(broken)); err == nil || dials != 1 {
		t.Errorf("a cancelled call: %d dials, err %v; want 1 dial and the error", dials, err)
	}
}
