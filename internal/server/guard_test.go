package server_test

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/server"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
)

const refreshEvery = 300 * time.Millisecond

// refreshingNode is a node that refreshes from its store every
// refreshEvery, as `joblet server` does, and the Fleet to change the store.
func refreshingNode(t *testing.T) (*fleet, *certs.Fleet) {
	t.Helper()
	f := startNode(t, nil)
	f.node.Shutdown(context.Background()) // replaced by one that refreshes
	fl := &certs.Fleet{Store: f.store, StoreDesc: "memory", Log: quiet}
	path := filepath.Join(f.home, "config", "joblet-config.yml")
	s, err := server.New(f.srv, server.Options{ConfigPath: path, RefreshInterval: refreshEvery,
		Refresh: func(ctx context.Context) (bool, error) {
			r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: path})
			if err != nil {
				return false, err
			}
			return r.Renewed || r.TrustChanged, nil
		}}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	ctx, cancel := context.WithCancel(context.Background())
	s.Run(ctx)
	t.Cleanup(func() {
		cancel()
		sctx, stop := context.WithTimeout(context.Background(), 5*time.Second)
		defer stop()
		s.Shutdown(sctx)
	})
	for _, n := range f.rnx.Nodes {
		n.Address = l.Addr().String()
	}
	f.addr, f.node = l.Addr().String(), s
	return f, fl
}

// refusedWithin calls call until it fails, and returns how long that took
// and the failure; it fails the test past limit or on another error.
func refusedWithin(t *testing.T, limit time.Duration, call func() error) (time.Duration, error) {
	t.Helper()
	start := time.Now()
	for {
		err := call()
		if err != nil {
			return time.Since(start), err
		}
		if time.Since(start) > limit {
			t.Fatalf("still served %v later", limit)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// One connection, held open across the revocation of its client
// certificate: its next call is refused within one refresh interval, and a
// log stream it had open is ended too.
func TestOpenConnectionRefusedAfterRevocation(t *testing.T) {
	f, fl := refreshingNode(t)
	admin := dial(t, "default", f.rnx.Nodes["default"])
	dev := dial(t, "developer", f.rnx.Nodes["developer"])
	// The developer's own job: it may follow only those (docs/JOBS.md).
	job, err := dev.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "sleep", Args: []string{"30"}})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Jobs.StopJob(context.Background(), &pb.StopJobRequest{Id: job.Id})
	if _, err := dev.Info(ctx(t)); err != nil {
		t.Fatal(err)
	}
	logs, err := dev.Jobs.GetJobLogs(ctx(t), &pb.GetJobLogsRequest{Id: job.Id, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	streamEnded := make(chan error, 1)
	go func() {
		for {
			if _, err := logs.Recv(); err != nil {
				streamEnded <- err
				return
			}
		}
	}()

	cert, _ := pki.ParseCert([]byte(f.rnx.Nodes["developer"].Cert))
	if _, err := fl.Revoke(context.Background(), cert.SerialNumber, 1); err != nil {
		t.Fatal(err)
	}
	took, err := refusedWithin(t, refreshEvery+3*time.Second, func() error {
		_, err := dev.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{})
		return err
	})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "has been revoked") ||
		!strings.Contains(err.Error(), pki.SerialHex(cert.SerialNumber)) {
		t.Fatalf("refused with %v, want Unauthenticated naming the revoked serial", err)
	}
	select {
	case err := <-streamEnded:
		if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "has been revoked") {
			t.Fatalf("the open log stream ended with %v", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("the open log stream outlived the revocation")
	}
	if _, err := admin.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); err != nil {
		t.Fatalf("the admin, not revoked, was refused: %v", err)
	}
	reliability.Record(t, "revocation", fmt.Sprintf("revoke a client certificate while its connection stays open (node refreshes every %v)", refreshEvery),
		fmt.Sprintf("the next call on the same connection refused after %v: %s; its open log stream ended the same way; other roles served",
			took.Round(100*time.Millisecond), status.Convert(err).Message()))
}

// A trust removal (the rotation's finish) reaches a connection opened with
// a client certificate of the retired CA.
func TestOpenConnectionRefusedAfterTrustRemoval(t *testing.T) {
	f, fl := refreshingNode(t)
	old := dial(t, "reader", f.rnx.Nodes["reader"])
	if _, err := old.Info(ctx(t)); err != nil {
		t.Fatal(err)
	}
	bg := context.Background()
	for _, step := range []func(context.Context) (*certs.RotationStatus, error){
		func(ctx context.Context) (*certs.RotationStatus, error) {
			return fl.BeginRotation(ctx, certs.CAKeyRef{})
		},
		fl.PromoteRotation,
	} {
		if _, err := step(bg); err != nil {
			t.Fatal(err)
		}
	}
	// Until finish both CAs are trusted: the old certificate is served.
	time.Sleep(2 * refreshEvery)
	if _, err := old.Info(ctx(t)); err != nil {
		t.Fatalf("refused while the old CA is still trusted: %v", err)
	}
	if _, err := fl.FinishRotation(bg); err != nil {
		t.Fatal(err)
	}
	took, err := refusedWithin(t, refreshEvery+3*time.Second, func() error {
		_, err := old.Info(ctx(t))
		return err
	})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "no longer chains to a CA this node trusts") {
		t.Fatalf("refused with %v, want Unauthenticated saying the trust changed", err)
	}
	reliability.Record(t, "revocation", "rotate-ca finish while a client of the retired CA holds its connection open",
		fmt.Sprintf("its next call refused after %v: %s", took.Round(100*time.Millisecond), status.Convert(err).Message()))
}

// A client certificate that expires while its connection is open is
// refused on the next call.
func TestOpenConnectionRefusedAfterExpiry(t *testing.T) {
	f := startNode(t, nil)
	n := *f.rnx.Nodes["default"]
	now := time.Now()
	n.Cert, n.Key = clientCert(t, fleetCA(t, f.store), []string{"admin"}, now.Add(-time.Minute), now.Add(2*time.Second))
	c := dial(t, "short", &n)
	if _, err := c.Info(ctx(t)); err != nil {
		t.Fatal(err)
	}
	_, err := refusedWithin(t, 5*time.Second, func() error {
		_, err := c.Info(ctx(t))
		return err
	})
	if status.Code(err) != codes.Unauthenticated || !strings.Contains(err.Error(), "expired at") {
		t.Fatalf("refused with %v, want Unauthenticated naming the expiry", err)
	}
	reliability.Record(t, "TLS", "a client certificate expires while its connection is open",
		"the next call refused: "+status.Convert(err).Message())
}

// The connection limits: a silent socket is closed after the handshake
// timeout; past the cap of pending handshakes a new socket makes the node
// close the oldest silent one (never the newcomer); a real client from
// another address is served while the silent ones keep coming.
func TestHandshakeLimits(t *testing.T) {
	f := startNode(t, nil)
	f.srv.Security.HandshakeTimeout = "1s"
	f.srv.Security.MaxPendingHandshakes = 3
	s, err := server.New(f.srv, server.Options{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Shutdown(context.Background())
	// closedAfter is how long the server took to close a silent socket.
	closedAfter := func(c net.Conn) time.Duration {
		start := time.Now()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		c.Read(make([]byte, 1))
		return time.Since(start)
	}
	silent := func() net.Conn {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		c, err := d.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	var idle []net.Conn
	for range 3 {
		idle = append(idle, silent())
	}
	time.Sleep(100 * time.Millisecond) // accepted
	over := silent()
	if d := closedAfter(idle[0]); d > 500*time.Millisecond {
		t.Fatalf("the oldest silent socket was held %v after a 4th came past the cap", d)
	}
	if d := closedAfter(over); d > 2500*time.Millisecond || d < 500*time.Millisecond {
		t.Fatalf("the newest silent socket was held %v (handshake timeout 1s)", d)
	}
	// Silent sockets keep coming, 3 at a time, while a real client calls.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
			if c, err := d.Dial("tcp", l.Addr().String()); err == nil {
				defer c.Close()
			}
			time.Sleep(5 * time.Millisecond)
		}
	}()
	n := *f.rnx.Nodes["default"]
	n.Address = l.Addr().String()
	if _, err := dial(t, "default", &n).Info(ctx(t)); err != nil {
		t.Fatalf("a real client among the silent ones: %v", err)
	}
	reliability.Record(t, "TLS", "silent TCP connections past security.maxPendingHandshakes (3, handshakeTimeout 1s) from one address, and a real client from another",
		"each newcomer closes the oldest silent one; the newest held until the handshake timeout; the real client served")
}

// The connection settings are validated with the key in the message.
func TestConnectionSettings(t *testing.T) {
	for _, tc := range []struct {
		sec  config.Security
		want string
	}{
		{config.Security{MaxConnectionAge: "0s"}, "security.maxConnectionAge"},
		{config.Security{MaxConnectionAgeGrace: "soon"}, "security.maxConnectionAgeGrace"},
		{config.Security{HandshakeTimeout: "-1s"}, "security.handshakeTimeout"},
		{config.Security{MaxPendingHandshakes: -1}, "security.maxPendingHandshakes"},
		{config.Security{MaxConnectionIdle: "0"}, "security.maxConnectionIdle"},
		{config.Security{KeepaliveTime: "1s"}, "security.keepaliveTime"},
		{config.Security{MaxStreamsPerConn: -5}, "security.maxStreamsPerConnection"},
		{config.Security{MaxStreamsPerRole: 1 << 30}, "security.maxStreamsPerRole"},
	} {
		s := config.Server{Security: tc.sec}
		if _, err := s.Connections(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want an error naming %s", tc.sec, err, tc.want)
		}
	}
	var s config.Server
	c, err := s.Connections()
	if err != nil || c.MaxAge != config.DefaultMaxConnectionAge || c.HandshakeTimeout != config.DefaultHandshakeTimeout || c.MaxPendingHandshakes != config.DefaultMaxPendingHandshakes ||
		c.MaxIdle != config.DefaultMaxConnectionIdle || c.KeepaliveTime != config.DefaultKeepaliveTime ||
		c.MaxStreamsPerConn != config.DefaultMaxStreamsPerConn || c.MaxStreamsPerRole != config.DefaultMaxStreamsPerRole {
		t.Fatalf("defaults: %+v %v", c, err)
	}
}

// After security.maxConnectionAge the node asks the client to reconnect:
// one client, calling steadily, opens new connections (each handshakes
// against the current trust).
func TestMaxConnectionAge(t *testing.T) {
	f := startNode(t, nil)
	f.srv.Security.MaxConnectionAge = "500ms"
	s, err := server.New(f.srv, server.Options{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	defer s.Shutdown(context.Background())
	tc, err := client.TLSConfig(f.rnx.Nodes["reader"])
	if err != nil {
		t.Fatal(err)
	}
	var dials atomic.Int32
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(credentials.NewTLS(tc)),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			dials.Add(1)
			return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	node := pb.NewNodeServiceClient(cc)
	for end := time.Now().Add(2500 * time.Millisecond); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		if _, err := node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil {
			t.Fatalf("a call failed across the reconnects: %v", err)
		}
	}
	if n := dials.Load(); n < 3 {
		t.Fatalf("one client over 2.5 s with maxConnectionAge 500ms connected %d times", n)
	}
	reliability.Record(t, "TLS", "one client calling every 50 ms for 2.5 s, security.maxConnectionAge 500ms",
		fmt.Sprintf("it connected %d times (each a new handshake against the current trust), no call failed", dials.Load()))
}
