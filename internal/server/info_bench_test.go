package server_test

import (
	"context"
	"crypto/x509"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/client"
)

// BenchmarkGetNodeInfo is `rnx info`'s call over 16 mutual-TLS
// connections, server and clients in this process: with -cpuprofile it
// shows what a call costs the node beyond gRPC itself.
func BenchmarkGetNodeInfo(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchInfo(b, false, quiet) })
	// As rnx calls: each call carries the client's CRL number (crlgate.go).
	b.Run("crl-number", func(b *testing.B) { benchInfo(b, true, quiet) })
	// The node's log written to a file, as a node's stderr is: every call's
	// audit line (audit.go) costs its write.
	b.Run("log-to-file", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "node.log"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		benchInfo(b, false, slog.New(slog.NewTextHandler(f, nil)))
	})
}

func benchInfo(b *testing.B, learning bool, log *slog.Logger) {
	f := startNodeLog(b, nil, log)
	const conns = 16
	var wg sync.WaitGroup
	per := b.N/conns + 1
	// CPU per call, the server's and its clients' together (one process):
	// unlike ns/op it does not move with what else the machine runs.
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for i := 0; i < conns; i++ {
		c := dial(b, "default", f.rnx.Nodes["default"])
		if learning {
			var err error
			if c, err = client.DialLearning("default", f.rnx.Nodes["default"], func([]byte, [][]*x509.Certificate) error { return nil }); err != nil {
				b.Fatal(err)
			}
			defer c.Close()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				if _, err := c.Info(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	var after syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &after)
	cpu := time.Duration(after.Utime.Nano() + after.Stime.Nano() - before.Utime.Nano() - before.Stime.Nano())
	b.ReportMetric(float64(cpu.Microseconds())/float64(per*conns), "cpu-µs/call")
}
