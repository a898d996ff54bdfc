package server_test

import (
	"context"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// A client learns a node's newer CRL from the call it makes anyway: the
// node refuses the call before running it, hands its CRL over, and the
// client calls again. Once the client holds that CRL no call is refused;
// a client that refuses the node gets its refusal and nothing ran; a call
// without the number (an older rnx, grpcurl) is never touched.
func TestNewerCRLIsLearnedBeforeTheCall(t *testing.T) {
	f := nodeWithCRL(t)
	if f.srv.Security.CRL == "" {
		t.Fatal("the bootstrapped node holds no CRL")
	}
	entry := *f.rnx.Nodes["default"]
	entry.CRL = "" // a config from before the fleet's first CRL
	var learned int
	var served [][]*x509.Certificate
	conn, err := client.DialLearning("default", &entry, func(crl []byte, chains [][]*x509.Certificate) error {
		learned++
		served = chains
		entry.CRL = string(crl)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); err != nil {
		t.Fatal(err)
	}
	if learned != 1 || entry.CRL != f.srv.Security.CRL || served == nil {
		t.Fatalf("learned %d times (want 1), CRL taken: %v, server certificate given: %v", learned, entry.CRL == f.srv.Security.CRL, served != nil)
	}
	if _, err := conn.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil || learned != 1 {
		t.Fatalf("a call with the node's own CRL: %v, learned %d times (want still 1)", err, learned)
	}

	// A client that refuses the node: the call it asked for never ran.
	stale := *f.rnx.Nodes["default"]
	stale.CRL = ""
	refuse := errors.New("this node is revoked")
	bad, err := client.DialLearning("default", &stale, func([]byte, [][]*x509.Certificate) error { return refuse })
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "true"}); !errors.Is(err, refuse) {
		t.Fatalf("want the client's refusal, got %v", err)
	}
	if list, err := conn.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); err != nil || len(list.Jobs) != 0 {
		t.Fatalf("a refused call ran: %v %v", list, err)
	}

	// A client that keeps its older CRL (it cannot verify the node's) is
	// refused once per call, then served: never a loop.
	keeps := 0
	ignoring, err := client.DialLearning("default", &stale, func([]byte, [][]*x509.Certificate) error { keeps++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer ignoring.Close()
	for i := 0; i < 2; i++ {
		if _, err := ignoring.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if keeps != 2 {
		t.Fatalf("offered the CRL %d times over 2 calls, want 2", keeps)
	}

	// A stream (job log) is refused at its first receive, then opened
	// again with the same request: the node answers for that job.
	streamEntry := *f.rnx.Nodes["default"]
	streamEntry.CRL = ""
	sc, learnedBy := learning(t, &streamEntry)
	logs, err := sc.Jobs.GetJobLogs(ctx(t), &pb.GetJobLogsRequest{Id: "no-such-job"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := logs.Recv(); status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "no-such-job") || *learnedBy != 1 {
		t.Fatalf("stream after learning: %v (want NotFound naming the job), learned %d times", err, *learnedBy)
	}

	// Without the number: served as before.
	plain := dial(t, "default", &stale)
	if _, err := plain.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); err != nil {
		t.Fatal(err)
	}
}

// The node tells a connection its CRL number once, on the first call that
// carries the client's, and again on every call whose number differs from
// its own (so a client holding a newer CRL always learns the node's is
// older and hands it over); the calls between carry nothing, so the gate
// costs a call no header. A new connection is told again.
func TestCRLNumberToldOncePerConnection(t *testing.T) {
	f := nodeWithCRL(t)
	n, err := pki.CRLNumber([]byte(f.srv.Security.CRL))
	if err != nil {
		t.Fatal(err)
	}
	own := pb.FormatCRLNumber(n)
	told := func(c *client.Conn, held string) string {
		t.Helper()
		var h metadata.MD
		if _, err := c.Node.GetNodeInfo(metadata.AppendToOutgoingContext(ctx(t), pb.CRLNumberKey, held), &pb.GetNodeInfoRequest{}, grpc.Header(&h)); err != nil {
			t.Fatal(err)
		}
		if v := h.Get(pb.CRLNumberKey); len(v) > 0 {
			return v[0]
		}
		return ""
	}
	c := dial(t, "default", f.rnx.Nodes["default"])
	newer := pb.FormatCRLNumber(new(big.Int).Add(n, big.NewInt(1)))
	for i, step := range []struct{ held, want string }{{own, own}, {own, ""}, {own, ""}, {newer, own}, {newer, own}, {own, ""}} {
		if got := told(c, step.held); got != step.want {
			t.Fatalf("call %d holding %s: told %q, want %q", i, step.held, got, step.want)
		}
	}
	if got := told(dial(t, "default", f.rnx.Nodes["default"]), own); got != own {
		t.Fatalf("a new connection's first call: told %q, want %q", got, own)
	}
}

// Every call of a connection carries the number, GetNodeInfo (`rnx info`)
// included, not only the first: an entry whose CRL turns out older than
// the node's on a later call learns the node's before that call runs.
func TestLaterGetNodeInfoCarriesTheNumber(t *testing.T) {
	f := nodeWithCRL(t)
	entry := *f.rnx.Nodes["default"] // holds the node's CRL
	conn, learned := learning(t, &entry)
	for i := 0; i < 2; i++ {
		if _, err := conn.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil || *learned != 0 {
			t.Fatalf("call %d holding the node's CRL: %v, learned %d times (want 0)", i, err, *learned)
		}
	}
	entry.CRL = "" // the entry now holds an older CRL than the node
	if _, err := conn.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil || *learned != 1 || entry.CRL != f.srv.Security.CRL {
		t.Fatalf("a later GetNodeInfo holding an older CRL: %v, learned %d times (want 1), CRL taken: %v", err, *learned, entry.CRL == f.srv.Security.CRL)
	}
}

// learning dials entry as rnx does; every CRL a node hands over is taken
// into the entry and counted.
func learning(t *testing.T, entry *config.Node) (*client.Conn, *int) {
	t.Helper()
	learned := new(int)
	conn, err := client.DialLearning("default", entry, func(crl []byte, _ [][]*x509.Certificate) error {
		*learned++
		entry.CRL = string(crl)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, learned
}

// nodeWithCRL is a node of a fleet that has revoked a certificate: it
// holds the fleet's CRL (number 1).
func nodeWithCRL(t *testing.T) *fleet {
	t.Helper()
	st := storetest.NewMemoryStore()
	startNode(t, st) // the fleet
	fl := &certs.Fleet{Store: st, Log: quiet}
	if _, err := fl.Revoke(context.Background(), big.NewInt(0x1234), 1); err != nil {
		t.Fatal(err)
	}
	return startNode(t, st)
}
