package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
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

// BenchmarkGetNodeInfoFloor puts joblet beside its floor in one run
// (-count interleaves nothing, so run them in turn, e.g.
// -bench 'GetNodeInfoFloor' -count 5): a bare gRPC server on the node's
// own TLS answering a prepared NodeInfo (bench/floorserver's), called by
// plain clients; and joblet as rnx calls it (the CRL number on every call)
// with its log, an audit line per call, written to a file. cpu-µs/call of
// the floor over joblet's is the serving benchmark's CPU ratio.
func BenchmarkGetNodeInfoFloor(b *testing.B) {
	b.Run("floor", func(b *testing.B) {
		f := startNodeLog(b, nil, quiet)
		n := *f.rnx.Nodes["default"]
		n.Address = startFloor(b, f.srv)
		benchCalls(b, &n, false)
	})
	b.Run("joblet-rnx-log-to-file", func(b *testing.B) {
		lf, err := os.Create(filepath.Join(b.TempDir(), "node.log"))
		if err != nil {
			b.Fatal(err)
		}
		defer lf.Close()
		f := startNodeLog(b, nil, slog.New(slog.NewTextHandler(lf, nil)))
		benchCalls(b, f.rnx.Nodes["default"], true)
	})
	// What the audit line costs: formatted and thrown away (no write),
	// and not made at all (a log level above it); and the CRL number's.
	b.Run("joblet-rnx-log-discarded", func(b *testing.B) {
		benchCalls(b, startNodeLog(b, nil, quiet).rnx.Nodes["default"], true)
	})
	noAudit := slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b.Run("joblet-rnx-no-audit", func(b *testing.B) {
		benchCalls(b, startNodeLog(b, nil, noAudit).rnx.Nodes["default"], true)
	})
	b.Run("joblet-plain-no-audit", func(b *testing.B) {
		benchCalls(b, startNodeLog(b, nil, noAudit).rnx.Nodes["default"], false)
	})
}

type floorNode struct {
	pb.UnimplementedNodeServiceServer
	info *pb.NodeInfo
}

func (n *floorNode) GetNodeInfo(context.Context, *pb.GetNodeInfoRequest) (*pb.NodeInfo, error) {
	return n.info, nil
}

// startFloor serves bench/floorserver's bare gRPC server on the node's
// certificate and trust; it returns its address.
func startFloor(b *testing.B, srv *config.Server) string {
	cert, err := tls.X509KeyPair([]byte(srv.Security.ServerCert), []byte(srv.Security.ServerKey))
	if err != nil {
		b.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(srv.Security.CACert))
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, NextProtos: []string{"h2"}}
	info := &pb.NodeInfo{NodeId: "floor-node-0000000000", Version: "floor", ServerCertSerial: "0123456789abcdef0123456789abcdef",
		ServerCertNotAfterUnix: cert.Leaf.NotAfter.Unix(), CallerRole: "admin",
		ServerCertIssuerSha256: "0000000000000000000000000000000000000000000000000000000000000000", Crl: []byte(srv.Security.CRL),
		JobIsolation: "full (uid 65534, network none; per job memory 512 MiB, cpu 100%, procs 256 by default, at most 4 GiB, 200%, 4096)"}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	pb.RegisterNodeServiceServer(s, &floorNode{info: info})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go s.Serve(l)
	b.Cleanup(s.Stop)
	return l.Addr().String()
}

func benchInfo(b *testing.B, learning bool, log *slog.Logger) {
	f := startNodeLog(b, nil, log)
	benchCalls(b, f.rnx.Nodes["default"], learning)
}

// benchCalls calls GetNodeInfo b.N times over 16 connections to node.
func benchCalls(b *testing.B, node *config.Node, learning bool) {
	const conns = 16
	var wg sync.WaitGroup
	per := b.N/conns + 1
	// CPU per call, the server's and its clients' together (one process):
	// unlike ns/op it does not move with what else the machine runs.
	var before syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &before)
	b.ResetTimer()
	for i := 0; i < conns; i++ {
		c := dial(b, "default", node)
		if learning {
			var err error
			if c, err = client.DialLearning("default", node, func([]byte, [][]*x509.Certificate) error { return nil }); err != nil {
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
