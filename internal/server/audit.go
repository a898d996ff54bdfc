package server

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

// The audit line: one log line per call, when it ends, naming who made it
// (the person and the role, as the verified client certificate says; the
// person is "shared" for a shared role certificate; the certificate's
// serial and the client's address), what (the method, and the job when
// the call names one) and how it ended (the gRPC code, and the node's
// message when it is not OK). It runs outermost, with the metrics,
// so the calls the re-check or authorization refuse are on record too.
// Load balancers check /healthz over HTTP (docs/OPERATIONS.md), so the
// lines are callers' calls, not probes.

// auditMsg is the message of every audit line: `grep 'msg=call '`.
const auditMsg = "call"

// maxAuditValue caps what a caller chose (a job id in a request, the
// person in a certificate the node then refuses) and the node's message in
// a line; above the longest canonical ARN (a 512-character IAM path).
const maxAuditValue = 1024

type audit struct{ log *slog.Logger }

func (a audit) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	a.record(ctx, info.FullMethod, start, jobOf(req, resp), err)
	return resp, err
}

func (a audit) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	as := &auditStream{ServerStream: ss}
	err := h(srv, as)
	a.record(ss.Context(), info.FullMethod, start, as.job, err)
	return err
}

// auditStream notes the job a streaming call's request names (GetJobLogs).
type auditStream struct {
	grpc.ServerStream
	job string
}

func (s *auditStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.job == "" {
		s.job = jobOf(m, nil)
	}
	return err
}

// jobOf is the job a call is about: the one RunJob started, or the id a
// request names.
func jobOf(req, resp any) string {
	if j, ok := resp.(*pb.Job); ok && j != nil {
		return j.Id
	}
	if r, ok := req.(interface{ GetId() string }); ok {
		return r.GetId()
	}
	return ""
}

func (a audit) record(ctx context.Context, method string, start time.Time, job string, err error) {
	base := a.log.Handler()
	if !base.Enabled(ctx, slog.LevelInfo) {
		return
	}
	st := status.Convert(err)
	// Straight to the handler, with no caller's program counter: Logger
	// would walk the stack for a source line the node's log never
	// prints (a tenth of what the line costs, on every call).
	r := slog.NewRecord(time.Now(), slog.LevelInfo, auditMsg, 0)
	r.AddAttrs(slog.String("method", shortName(method)), slog.String("code", st.Code().String()))
	if job != "" {
		r.AddAttrs(slog.String("job", capped(job)))
	}
	r.AddAttrs(slog.Duration("took", time.Since(start).Round(time.Microsecond)))
	if err != nil {
		r.AddAttrs(slog.String("err", capped(st.Message())))
	}
	auditIDOf(ctx).handler(a.log).Handle(ctx, r)
}

// auditID is who a connection's calls come from, as the audit line names
// them: the same for every call of a connection (its client certificate
// and address), so worked out once per connection (connIDOf), and
// formatted once too (handler).
type auditID struct {
	role, person, serial, from string
	formatted                  atomic.Pointer[auditHandler]
}

// auditHandler is the audit log's handler with a connection's names
// formatted already (slog's WithAttrs): a call formats only what is its own.
// It is kept for the logger it was made from (a pointer: a handler may be
// a value that == cannot compare, and would panic).
type auditHandler struct {
	log *slog.Logger
	h   slog.Handler
}

// handler is log's handler with the connection's names: person, role,
// serial and the client's address, in that order, before the call's own.
func (id *auditID) handler(log *slog.Logger) slog.Handler {
	if f := id.formatted.Load(); f != nil && f.log == log {
		return f.h
	}
	attrs := []slog.Attr{slog.String("person", id.person), slog.String("role", id.role), slog.String("serial", id.serial)}
	if id.from != "" {
		attrs = append(attrs, slog.String("from", id.from))
	}
	f := &auditHandler{log: log, h: log.Handler().WithAttrs(attrs)}
	id.formatted.Store(f)
	return f.h
}

func auditIDOf(ctx context.Context) *auditID { return &connIDOf(ctx).audit }

func capped(s string) string {
	if len(s) > maxAuditValue {
		return s[:maxAuditValue] + "..."
	}
	return s
}
