package client

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// ReadAttempts is how many connections a read (info, job list) tries: a
// node killed or restarting behind a TCP balancer answers a new connection
// with a reset until the balancer's health check takes it out (HAProxy:
// fall 3 x inter, 1.5 s in the tests), and a fleet restarting at once is
// back in the balancer's rotation a few checks after it listens, so the
// waits between tries (250ms, 500ms, 1s, 2s) outlast both.
const ReadAttempts = 5

// Retryable says whether a failed read is worth a new connection: the
// connection broke or nothing listened (codes.Unavailable), and the failure
// is not one the node or this config decided (a certificate refused, a
// CA not trusted: the same answer again on any connection).
func Retryable(err error) bool {
	if status.Code(err) != codes.Unavailable {
		return false
	}
	var ex *ExplainedError
	return !errors.As(err, &ex) || ex.transient
}

// Retry runs a read up to attempts times, each on a connection dial makes
// anew (through a balancer, most likely another node), while the failure is
// Retryable and ctx allows. A job start is never retried: it is not a read,
// and a start whose answer was lost may have run.
func Retry(ctx context.Context, attempts int, dial func() (*Conn, error), read func(*Conn) error) error {
	wait := 250 * time.Millisecond
	for i := 1; ; i++ {
		conn, err := dial()
		if err != nil {
			return err
		}
		err = read(conn)
		conn.Close()
		if err == nil || i >= attempts || !Retryable(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}
