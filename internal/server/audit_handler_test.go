package server

import (
	"context"
	"log/slog"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

// valueHandler is a slog handler held by value with a slice in it (as a
// handler may be): its values cannot be compared with ==.
type valueHandler struct {
	attrs []slog.Attr
	got   *[][]slog.Attr
}

func (h valueHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h valueHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return valueHandler{attrs: append(append([]slog.Attr{}, h.attrs...), as...), got: h.got}
}
func (h valueHandler) WithGroup(string) slog.Handler { return h }
func (h valueHandler) Handle(_ context.Context, r slog.Record) error {
	line := append([]slog.Attr{}, h.attrs...)
	r.Attrs(func(a slog.Attr) bool { line = append(line, a); return true })
	*h.got = append(*h.got, line)
	return nil
}

// The audit line's names kept with a connection work with any handler the
// audit log has: a second call of a connection logging through a handler
// held by value (not comparable) is a line, not a panic of the node.
func TestAuditLineWithAValueHandler(t *testing.T) {
	var got [][]slog.Attr
	a := audit{log: slog.New(valueHandler{got: &got})}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 59186},
		AuthInfo: &connInfo{TLSInfo: credentials.TLSInfo{}, est: &estConn{}}})
	for range 2 {
		a.record(ctx, pb.NodeService_GetNodeInfo_FullMethodName, time.Now(), "", nil)
	}
	if len(got) != 2 {
		t.Fatalf("%d lines, want 2", len(got))
	}
	for _, line := range got {
		if len(line) == 0 || line[0].Key != "person" || line[0].Value.String() != "none" {
			t.Fatalf("line %v: want the connection's names first", line)
		}
	}
}
