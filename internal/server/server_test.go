package server_test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	reflectionv1 "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/internal/server"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

type fleet struct {
	home  string
	store *storetest.MemoryStore
	addr  string
	rnx   *config.Rnx
	srv   *config.Server
	node  *server.Server
}

// startNode bootstraps a node into a temp home and serves it on 127.0.0.1,
// its config changed first by mods.
func startNode(t testing.TB, st *storetest.MemoryStore, mods ...func(*config.Server)) *fleet {
	t.Helper()
	return startNodeLog(t, st, quiet, mods...)
}

// startNodeLog is startNode with the node logging to log.
func startNodeLog(t testing.TB, st *storetest.MemoryStore, log *slog.Logger, mods ...func(*config.Server)) *fleet {
	t.Helper()
	if st == nil {
		st = storetest.NewMemoryStore()
	}
	home := t.TempDir()
	fl := &certs.Fleet{Store: st, StoreDesc: "memory", Log: quiet}
	_, err := fl.Bootstrap(context.Background(), certs.BootstrapOptions{Home: home, ListenAddress: "127.0.0.1", ServerAddress: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	srvCfg, err := config.LoadServer(filepath.Join(home, "config", "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	srvCfg.Jobs.Dir = filepath.Join(home, "jobs") // not the default under /opt/joblet
	for _, mod := range mods {
		mod(srvCfg)
	}
	rnx, err := config.LoadRnx(filepath.Join(home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := server.New(srvCfg, server.Options{}, log)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go s.Serve(l)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})
	for _, n := range rnx.Nodes {
		n.Address = l.Addr().String()
	}
	return &fleet{home: home, store: st, addr: l.Addr().String(), rnx: rnx, srv: srvCfg, node: s}
}

func dial(t testing.TB, name string, n *config.Node) *client.Conn {
	t.Helper()
	c, err := client.Dial(name, n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return c
}

// Every role against every RPC, over real mutual TLS, on jobs its own role
// started where it can start jobs (the per-job rules for other roles' jobs
// are TestJobRoles).
func TestAuthorizationMatrix(t *testing.T) {
	f := startNode(t, nil)
	admin := dial(t, "default", f.rnx.Nodes["default"])
	var owner *client.Conn // who starts the jobs the call under test acts on
	seedOf := map[*client.Conn]string{}
	seed := func() string {
		if seedOf[owner] == "" {
			j, err := owner.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "sleep", Args: []string{"30"}})
			if err != nil {
				t.Fatal(err)
			}
			seedOf[owner] = j.Id
		}
		return seedOf[owner]
	}
	calls := map[string]func(c *client.Conn) error{
		"RunJob": func(c *client.Conn) error {
			_, err := c.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "true"})
			return err
		},
		"ListJobs": func(c *client.Conn) error {
			_, err := c.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{})
			return err
		},
		"GetJobStatus": func(c *client.Conn) error {
			_, err := c.Jobs.GetJobStatus(ctx(t), &pb.GetJobStatusRequest{Id: seed()})
			return err
		},
		"GetJobLogs": func(c *client.Conn) error {
			s, err := c.Jobs.GetJobLogs(ctx(t), &pb.GetJobLogsRequest{Id: seed()})
			if err != nil {
				return err
			}
			for {
				if _, err := s.Recv(); err == io.EOF {
					return nil
				} else if err != nil {
					return err
				}
			}
		},
		"StopJob": func(c *client.Conn) error {
			j, err := owner.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "sleep", Args: []string{"30"}})
			if err != nil {
				return err
			}
			_, err = c.Jobs.StopJob(ctx(t), &pb.StopJobRequest{Id: j.Id})
			admin.Jobs.StopJob(ctx(t), &pb.StopJobRequest{Id: j.Id})
			return err
		},
		"GetNodeInfo": func(c *client.Conn) error {
			_, err := c.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{})
			return err
		},
		"OfferCRL": func(c *client.Conn) error {
			info, err := admin.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{})
			if err != nil {
				return err
			}
			_, err = c.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{Crl: info.Crl})
			return err
		},
	}
	allowed := map[pki.Role][]string{
		pki.Admin:      {"RunJob", "ListJobs", "GetJobStatus", "GetJobLogs", "StopJob", "GetNodeInfo", "OfferCRL"},
		pki.Maintainer: {"RunJob", "ListJobs", "GetJobStatus", "GetJobLogs", "StopJob", "GetNodeInfo", "OfferCRL"},
		pki.Developer:  {"RunJob", "ListJobs", "GetJobStatus", "GetJobLogs", "StopJob", "GetNodeInfo", "OfferCRL"},
		pki.Reader:     {"ListJobs", "GetJobStatus", "GetNodeInfo", "OfferCRL"},
	}
	nodeOf := map[pki.Role]string{pki.Admin: "default", pki.Maintainer: "maintainer", pki.Developer: "developer", pki.Reader: "reader"}
	// Every RPC in the service descriptors is in the matrix.
	for _, m := range append(pb.JobService_ServiceDesc.Methods, pb.NodeService_ServiceDesc.Methods...) {
		if calls[m.MethodName] == nil {
			t.Errorf("RPC %s is not exercised by the matrix", m.MethodName)
		}
	}
	for _, s := range pb.JobService_ServiceDesc.Streams {
		if calls[s.StreamName] == nil {
			t.Errorf("RPC %s is not exercised by the matrix", s.StreamName)
		}
	}
	for role, ok := range allowed {
		c := dial(t, nodeOf[role], f.rnx.Nodes[nodeOf[role]])
		owner = c
		if role == pki.Reader {
			owner = admin
		}
		for rpc, call := range calls {
			want := false
			for _, a := range ok {
				want = want || a == rpc
			}
			err := call(c)
			switch {
			case want && err != nil:
				t.Errorf("%s calling %s: %v, want allowed", role, rpc, err)
			case !want && status.Code(err) != codes.PermissionDenied:
				t.Errorf("%s calling %s: %v, want PermissionDenied", role, rpc, err)
			case !want && !strings.Contains(err.Error(), string(role)) || !want && !strings.Contains(err.Error(), rpc):
				t.Errorf("denial should name the role and the operation: %v", err)
			}
		}
	}
	info, err := dial(t, "reader", f.rnx.Nodes["reader"]).Info(ctx(t))
	if err != nil || info.CallerRole != "reader" || info.NodeId != f.srv.Server.NodeID {
		t.Fatalf("info %+v %v", info, err)
	}
	for _, id := range seedOf {
		admin.Jobs.StopJob(ctx(t), &pb.StopJobRequest{Id: id})
	}
}

// clientCert signs a client certificate with arbitrary OUs (bypassing
// pki's role check, as an attacker or an old tool might).
func clientCert(t *testing.T, ca pki.CA, ous []string, notBefore, notAfter time.Time) (certPEM, keyPEM string) {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	serial, _ := pki.NewSerial()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{Organization: []string{"Joblet"}, OrganizationalUnit: ous, CommonName: "x"},
		NotBefore: notBefore, NotAfter: notAfter, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	k, _ := pki.EncodeKey(key)
	return string(pki.EncodeCert(c)), string(k)
}

func fleetCA(t *testing.T, st *storetest.MemoryStore) pki.CA {
	names := certs.Names{Prefix: "joblet"}
	v, _ := st.Get(context.Background(), []string{names.CACert(), names.CAKey()})
	c, _ := pki.ParseCert([]byte(v[names.CACert()]))
	k, _ := pki.ParseKey([]byte(v[names.CAKey()]))
	return pki.CA{Cert: c, Key: k}
}

func TestTLSEdge(t *testing.T) {
	f := startNode(t, nil)
	other := startNode(t, nil) // another fleet: another CA
	base := *f.rnx.Nodes["default"]
	ca := fleetCA(t, f.store)
	now := time.Now()

	t.Run("legacy viewer OU is a reader", func(t *testing.T) {
		n := base
		n.Cert, n.Key = clientCert(t, ca, []string{"viewer"}, now.Add(-time.Minute), now.Add(time.Hour))
		info, err := dial(t, "viewer", &n).Info(ctx(t))
		if err != nil || info.CallerRole != "reader" {
			t.Fatalf("%v %v", info, err)
		}
		reliability.Record(t, "TLS", "client certificate with the legacy OU viewer", "accepted as role "+info.CallerRole)
	})
	t.Run("unknown OU is denied", func(t *testing.T) {
		n := base
		n.Cert, n.Key = clientCert(t, ca, []string{"root"}, now.Add(-time.Minute), now.Add(time.Hour))
		_, err := dial(t, "x", &n).Info(ctx(t))
		if status.Code(err) != codes.PermissionDenied || !strings.Contains(err.Error(), "no joblet role") {
			t.Fatalf("%v", err)
		}
		reliability.Record(t, "TLS", "client certificate from the fleet's CA with an unknown OU (root)", "denied: "+status.Code(err).String()+", "+status.Convert(err).Message())
	})

	refused := map[string]struct {
		node func() *config.Node
		want string
	}{
		"client certificate from another CA": {func() *config.Node {
			n := base
			o := other.rnx.Nodes["default"]
			n.Cert, n.Key = o.Cert, o.Key
			return &n
		}, "server rejected this client certificate"},
		"server certificate from another CA": {func() *config.Node {
			n := *other.rnx.Nodes["default"]
			n.CA = base.CA
			return &n
		}, "not signed by this config's CA"},
		"expired client certificate": {func() *config.Node {
			n := base
			n.Cert, n.Key = clientCert(t, ca, []string{"admin"}, now.Add(-2*time.Hour), now.Add(-time.Hour))
			return &n
		}, "client certificate"},
		"wrong host name": {func() *config.Node {
			// The same node on another loopback address that its
			// certificate does not name.
			l, err := net.Listen("tcp", "127.0.0.2:0")
			if err != nil {
				t.Fatal(err)
			}
			go f.node.Serve(l)
			n := base
			n.Address = l.Addr().String()
			return &n
		}, "does not name the address"},
	}
	for name, tc := range refused {
		t.Run(name, func(t *testing.T) {
			c := dial(t, "n", tc.node())
			_, err := c.Info(ctx(t))
			if err == nil {
				t.Fatal("the call succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			reliability.Record(t, "TLS", name, "refused, rnx says: "+err.Error())
		})
	}

	// Raw TLS: the server must refuse these handshakes itself.
	rawCfg := func(mod func(*tls.Config)) *tls.Config {
		tc, err := client.TLSConfig(&base)
		if err != nil {
			t.Fatal(err)
		}
		tc.NextProtos = []string{"h2"}
		mod(tc)
		return tc
	}
	for name, tc := range map[string]struct {
		cfg  *tls.Config
		want string
	}{
		"no client certificate": {rawCfg(func(c *tls.Config) { c.Certificates = nil }), "certificate required"},
		"TLS 1.2 only":          {rawCfg(func(c *tls.Config) { c.MinVersion, c.MaxVersion = tls.VersionTLS12, tls.VersionTLS12 }), "protocol version"},
	} {
		t.Run(name, func(t *testing.T) {
			conn, err := tls.Dial("tcp", f.addr, tc.cfg)
			if err == nil {
				// TLS 1.3: the server's verdict on the client certificate
				// arrives with the first read.
				conn.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, err = conn.Read(make([]byte, 1))
				conn.Close()
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err %v, want %q", err, tc.want)
			}
			reliability.Record(t, "TLS", name+" (raw handshake)", "refused by the server: "+err.Error())
		})
	}
}

func TestJobLifecycleOverGRPC(t *testing.T) {
	f := startNode(t, nil)
	c := dial(t, "developer", f.rnx.Nodes["developer"])
	j, err := c.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "sh", Args: []string{"-c", "echo a; sleep 0.2; echo b"}})
	if err != nil {
		t.Fatal(err)
	}
	if j.StartedBy != "developer" {
		t.Errorf("started by %q", j.StartedBy)
	}
	s, err := c.Jobs.GetJobLogs(ctx(t), &pb.GetJobLogsRequest{Id: j.Id, Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for {
		ch, err := s.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		out.Write(ch.Data)
	}
	if out.String() != "a\nb\n" {
		t.Fatalf("logs %q", out.String())
	}
	st, err := c.Jobs.GetJobStatus(ctx(t), &pb.GetJobStatusRequest{Id: j.Id})
	if err != nil || st.Status != "COMPLETED" || st.EndedUnixNano == 0 {
		t.Fatalf("%+v %v", st, err)
	}
	if _, err := c.Jobs.GetJobStatus(ctx(t), &pb.GetJobStatusRequest{Id: "missing"}); status.Code(err) != codes.NotFound {
		t.Fatalf("missing job: %v", err)
	}
	if _, err := c.Jobs.RunJob(ctx(t), &pb.RunJobRequest{Command: "/no/such/binary"}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad command: %v", err)
	}
}

func grpcConn(t *testing.T, n *config.Node) *grpc.ClientConn {
	t.Helper()
	tc, err := client.TLSConfig(n)
	if err != nil {
		t.Fatal(err)
	}
	cc, err := grpc.NewClient(n.Address, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// The standard health and reflection services answer every role, and
// health turns NOT_SERVING when the node shuts down.
func TestHealthAndReflection(t *testing.T) {
	f := startNode(t, nil)
	for _, node := range []string{"reader", "developer", "maintainer", "default"} {
		cc := grpcConn(t, f.rnx.Nodes[node])
		for _, svc := range []string{"", "joblet.v1.JobService"} {
			r, err := healthpb.NewHealthClient(cc).Check(ctx(t), &healthpb.HealthCheckRequest{Service: svc})
			if err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("%s: health of %q: %v %v", node, svc, r, err)
			}
		}
		rs, err := reflectionv1.NewServerReflectionClient(cc).ServerReflectionInfo(ctx(t))
		if err != nil {
			t.Fatal(err)
		}
		rs.Send(&reflectionv1.ServerReflectionRequest{MessageRequest: &reflectionv1.ServerReflectionRequest_ListServices{}})
		resp, err := rs.Recv()
		if err != nil {
			t.Fatalf("%s: reflection: %v", node, err)
		}
		var names []string
		for _, s := range resp.GetListServicesResponse().GetService() {
			names = append(names, s.Name)
		}
		if got := strings.Join(names, " "); !strings.Contains(got, "joblet.v1.JobService") || !strings.Contains(got, "grpc.health.v1.Health") {
			t.Fatalf("%s: reflection lists %q", node, got)
		}
		rs.CloseSend()
	}

	w, err := healthpb.NewHealthClient(grpcConn(t, f.rnx.Nodes["reader"])).Watch(ctx(t), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("watch: %v %v", r, err)
	}
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	go f.node.Shutdown(sctx)
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("watch during shutdown: %v %v", r, err)
	}
}

// A port another process holds fails at once, naming the address.
func TestListenOnTakenPort(t *testing.T) {
	f := startNode(t, nil)
	host, port, _ := net.SplitHostPort(f.addr)
	f.srv.Server.Address = host
	f.srv.Server.Port = mustAtoi(t, port)
	s, err := server.New(f.srv, server.Options{}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = s.ListenAndServe()
	if err == nil || !strings.Contains(err.Error(), "listen "+f.addr+": address already in use") || !strings.Contains(err.Error(), "server.port") {
		t.Fatalf("got %v", err)
	}
	if time.Since(start) > time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

func mustAtoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
