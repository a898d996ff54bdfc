package route

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/internal/pki"
)

type infoServer struct {
	pb.UnimplementedNodeServiceServer
	id string
}

func (s infoServer) GetNodeInfo(context.Context, *pb.GetNodeInfoRequest) (*pb.NodeInfo, error) {
	return &pb.NodeInfo{NodeId: s.id}, nil
}

// countingListener counts the connections a node accepted.
type countingListener struct {
	net.Listener
	n *atomic.Int32
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err == nil {
		l.n.Add(1)
	}
	return c, err
}

type fleet struct {
	ca    *pki.CA
	entry *config.Node
}

func newFleet(t *testing.T) *fleet {
	t.Helper()
	now := time.Now()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	cert, err := pki.NewCA(key, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := &pki.CA{Cert: cert, Key: key}
	ck, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := ca.IssueClient(ck.Public(), pki.Reader, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kp, _ := pki.EncodeKey(ck)
	return &fleet{ca: ca, entry: &config.Node{Cert: string(pki.EncodeCert(is.Cert)), Key: string(kp), CA: string(pki.EncodeCert(cert))}}
}

// node serves GetNodeInfo as id over mutual TLS; it returns the address and
// the count of connections it accepted.
func (f *fleet) node(t *testing.T, id string) (string, *atomic.Int32) {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := f.ca.IssueServer(key.Public(), pki.SANs{IPs: []net.IP{net.ParseIP("127.0.0.1")}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(f.ca.Cert)
	tc := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: key, Leaf: is.Cert}}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &atomic.Int32{}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	pb.RegisterNodeServiceServer(s, infoServer{id: id})
	go s.Serve(countingListener{l, n})
	t.Cleanup(s.Stop)
	return l.Addr().String(), n
}

func (f *fleet) router(t *testing.T, entryAddr, list string) *Router {
	t.Helper()
	e := *f.entry
	e.Address = entryAddr
	cfg := &config.Rnx{Version: config.RnxVersion, Nodes: map[string]*config.Node{"default": &e}}
	dir, err := nodedir.Load(cfg, "default", list)
	if err != nil {
		t.Fatal(err)
	}
	return &Router{Cfg: cfg, Entry: "default", Dir: dir}
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

// The entry answers as another node every time: the search gives up on it
// after 8 connections (it is that node, not a balancer) and says who
// answered; the directory then finds the job's node with one connection,
// named or not.
func TestReachBoundedAndThroughTheDirectory(t *testing.T) {
	t.Setenv(nodedir.Env, "")
	f := newFleet(t)
	addrA, connsA := f.node(t, "node-a")
	addrB, connsB := f.node(t, "node-b")
	const id = "node-b_0123456789ab"

	_, err := f.router(t, addrA, "").Reach(ctx(t), id)
	var nf *NotFoundError
	if !errors.As(err, &nf) || !strings.Contains(err.Error(), addrA+": 8 connection(s) answered by node-a ×8") || !strings.Contains(err.Error(), "--nodes node-b=HOST:PORT") {
		t.Fatalf("Reach without the node in the directory: %v", err)
	}
	if got := connsA.Load(); got != 8 {
		t.Fatalf("node-a accepted %d connections, want 8", got)
	}

	for _, list := range []string{"node-b=" + addrB, addrB} {
		before := connsB.Load()
		n, err := f.router(t, addrA, list).Reach(ctx(t), id)
		if err != nil {
			t.Fatalf("--nodes %s: %v", list, err)
		}
		if n.ID != "node-b" || n.Via != addrB || connsB.Load()-before != 1 {
			t.Fatalf("--nodes %s: reached %s via %s in %d connections", list, n.ID, n.Via, connsB.Load()-before)
		}
		n.Conn.Close()
	}
	// An ID that names no node: the selected entry's node, as before.
	if n, err := f.router(t, addrA, "").Reach(ctx(t), "0123456789ab"); err != nil || n.ID != "node-a" {
		t.Fatalf("an old ID: %v", err)
	} else {
		n.Conn.Close()
	}
	if _, err := f.router(t, addrA, "").Reach(ctx(t), "not an id"); err == nil || !strings.Contains(err.Error(), "is not a job ID") {
		t.Fatalf("a bad ID: %v", err)
	}
}

// Sweep finds every node of the directory once, and stops asking an entry
// point that brings no new node.
func TestSweepFindsEachNodeOnce(t *testing.T) {
	t.Setenv(nodedir.Env, "")
	f := newFleet(t)
	addrA, connsA := f.node(t, "node-a")
	addrB, _ := f.node(t, "node-b")
	nodes, problems := f.router(t, addrA, addrB+",127.0.0.1:1").Sweep(ctx(t))
	var ids []string
	for _, n := range nodes {
		ids = append(ids, n.ID)
		n.Conn.Close()
	}
	if strings.Join(ids, ",") != "node-a,node-b" || len(problems) != 1 || !strings.Contains(problems[0].Error(), "127.0.0.1:1") {
		t.Fatalf("swept %v, problems %v", ids, problems)
	}
	if got := connsA.Load(); got != 11 {
		t.Fatalf("the entry was asked %d times, want 11 (1, then 10 bringing nothing new)", got)
	}
}
