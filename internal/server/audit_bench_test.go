package server

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/pki"
)

// BenchmarkAuditLine is what the audit line adds to one call (a person's
// RunJob, the longest line): reading the caller from the certificate,
// formatting, and the write when the log goes to a file, as a node's
// stderr does. BenchmarkGetNodeInfo is a whole call for comparison.
func BenchmarkAuditLine(b *testing.B) {
	now := time.Now()
	rootKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	rootCert, err := pki.NewCA(rootKey, now, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ukey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	uca, err := (&pki.CA{Cert: rootCert, Key: rootKey}).IssueUserCA(ukey.Public(), now, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := (&pki.CA{Cert: uca.Cert, Key: ukey}).IssuePerson(key.Public(), pki.Person{ARN: "arn:aws:iam::111122223333:role/ops#carol", Role: pki.Developer}, now, time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ctx := peer.NewContext(context.Background(), &peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(10, 0, 0, 7), Port: 59186},
		AuthInfo: credentials.TLSInfo{State: tls.ConnectionState{VerifiedChains: [][]*x509.Certificate{{is.Cert, uca.Cert, rootCert}}}}})
	job := &pb.Job{Id: "node-dc06f2602694248c_590fc12c9a14"}
	for _, c := range []struct {
		name string
		w    func(b *testing.B) io.Writer
	}{
		{"discard", func(*testing.B) io.Writer { return io.Discard }},
		{"file", func(b *testing.B) io.Writer {
			f, err := os.Create(filepath.Join(b.TempDir(), "node.log"))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { f.Close() })
			return f
		}},
	} {
		b.Run(c.name, func(b *testing.B) {
			a := audit{log: slog.New(slog.NewTextHandler(c.w(b), nil))}
			b.ReportAllocs()
			for b.Loop() {
				a.record(ctx, pb.JobService_RunJob_FullMethodName, now, jobOf(nil, job), nil)
			}
		})
	}
}
