package certs_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
)

var names = certs.Names{Prefix: "joblet"}

// bootOpts is a fleet and one node's settings, as the tests set them.
type bootOpts struct {
	certs.Fleet
	certs.BootstrapOptions
}

func boot(ctx context.Context, o bootOpts) (*certs.Result, error) {
	return o.Fleet.Bootstrap(ctx, o.BootstrapOptions)
}

func opts(t *testing.T, st secretstore.Store) bootOpts {
	return bootOpts{
		Fleet: certs.Fleet{Store: st, StoreDesc: "test store", Log: slog.New(slog.NewTextHandler(io.Discard, nil))},
		BootstrapOptions: certs.BootstrapOptions{Home: t.TempDir(), ListenAddress: "127.0.0.1",
			ServerAddress: "10.1.2.3", Port: 50051, Retries: 2, RetryDelay: 10 * time.Millisecond, AwaitFirst: 20 * time.Millisecond}}
}

func bootstrap(t *testing.T, o bootOpts) *certs.Result {
	t.Helper()
	res, err := boot(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func actions(r *certs.Result) map[string]string {
	m := map[string]string{}
	for _, it := range r.Items {
		m[it.Name] = it.Action
	}
	return m
}

func fingerprint(r *certs.Result, name string) string {
	for _, it := range r.Items {
		if it.Name == name {
			return it.Fingerprint
		}
	}
	return ""
}

// snapshot reads every file under dir.
func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	m := map[string][]byte{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			m[p] = b
		}
		return nil
	})
	return m
}

func sameFiles(t *testing.T, before, after map[string][]byte) {
	t.Helper()
	if len(before) != len(after) {
		t.Fatalf("%d files before, %d after", len(before), len(after))
	}
	for p, b := range before {
		if !bytes.Equal(b, after[p]) {
			t.Fatalf("%s changed", p)
		}
	}
}

func TestFirstRunThenRerunKeepsSharedMaterial(t *testing.T) {
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	first := bootstrap(t, o)
	for name, a := range actions(first) {
		if a != certs.Generated {
			t.Errorf("first run: %s %s, want generated", name, a)
		}
	}
	if len(first.Files) != 6 {
		t.Fatalf("files: %v", first.Files)
	}
	for _, f := range first.Files {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", f, fi.Mode().Perm())
		}
	}
	srv1, _ := config.LoadServer(filepath.Join(o.Home, "config", "joblet-config.yml"))

	second := bootstrap(t, o)
	for name, a := range actions(second) {
		want := certs.Retrieved
		if name == "Server Certificate" {
			want = certs.Generated
		}
		if a != want {
			t.Errorf("re-run: %s %s, want %s", name, a, want)
		}
	}
	if fingerprint(first, "CA Certificate") != fingerprint(second, "CA Certificate") {
		t.Error("re-run changed the CA")
	}
	if fingerprint(first, "Server Certificate") == fingerprint(second, "Server Certificate") {
		t.Error("re-run did not re-issue the server certificate")
	}
	srv2, _ := config.LoadServer(filepath.Join(o.Home, "config", "joblet-config.yml"))
	if srv1.Server.NodeID == "" || srv1.Server.NodeID != srv2.Server.NodeID {
		t.Errorf("node id not kept: %q then %q", srv1.Server.NodeID, srv2.Server.NodeID)
	}
}

// The files verify with openssl: server certificate for serverAuth, every
// client certificate for clientAuth, and each key matches its certificate.
func TestWrittenFilesVerifyWithOpenSSL(t *testing.T) {
	o := opts(t, storetest.NewMemoryStore())
	o.AdditionalNames = []string{"node1.internal", "2001:db8::7"}
	o.KeyType = pki.RSA2048
	bootstrap(t, o)
	dir := filepath.Join(o.Home, "config")
	srv, err := config.LoadServer(filepath.Join(dir, "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	ca := []byte(srv.Security.CACert)
	openssl.Verify(t, ca, []byte(srv.Security.ServerCert), "sslserver")
	openssl.KeyMatchesCert(t, []byte(srv.Security.ServerKey), []byte(srv.Security.ServerCert))
	text := openssl.Text(t, []byte(srv.Security.ServerCert))
	for _, want := range []string{"DNS:localhost", "DNS:joblet", "IP Address:127.0.0.1", "IP Address:10.1.2.3", "DNS:node1.internal", "IP Address:2001:DB8:0:0:0:0:0:7"} {
		if !strings.Contains(text, want) {
			t.Errorf("server certificate lacks %s", want)
		}
	}
	rnx, err := config.LoadRnx(filepath.Join(dir, "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	wantNodes := map[string]pki.Role{"default": pki.Admin, "maintainer": pki.Maintainer, "developer": pki.Developer, "reader": pki.Reader}
	for node, role := range wantNodes {
		n := rnx.Nodes[node]
		if n == nil {
			t.Fatalf("operator config lacks node %q", node)
		}
		if n.Address != "10.1.2.3:50051" || n.IsDefault != (node == "default") {
			t.Errorf("node %q: address %q default %v", node, n.Address, n.IsDefault)
		}
		openssl.Verify(t, []byte(n.CA), []byte(n.Cert), "sslclient")
		openssl.KeyMatchesCert(t, []byte(n.Key), []byte(n.Cert))
		c, _ := pki.ParseCert([]byte(n.Cert))
		if r, _ := pki.RoleOf(c); r != role {
			t.Errorf("node %q carries role %q, want %q", node, r, role)
		}
		one, err := config.LoadRnx(filepath.Join(dir, "rnx-config-"+string(role)+".yml"))
		if err != nil {
			t.Fatal(err)
		}
		if len(one.Nodes) != 1 || one.Nodes["default"] == nil || !one.Nodes["default"].IsDefault || one.Nodes["default"].Cert != n.Cert {
			t.Errorf("rnx-config-%s.yml should hold only that role, as the default node", role)
		}
	}
}

func TestPublicAddressAndPort(t *testing.T) {
	o := opts(t, storetest.NewMemoryStore())
	o.PublicAddress = "joblet.example.com:443"
	o.Port = 50123
	bootstrap(t, o)
	srv, _ := config.LoadServer(filepath.Join(o.Home, "config", "joblet-config.yml"))
	if srv.Server.Port != 50123 {
		t.Errorf("listen port %d", srv.Server.Port)
	}
	cert, _ := pki.ParseLeaf([]byte(srv.Security.ServerCert))
	if err := cert.VerifyHostname("joblet.example.com"); err != nil {
		t.Error(err)
	}
	rnx, _ := config.LoadRnx(filepath.Join(o.Home, "config", "rnx-config.yml"))
	if got := rnx.Nodes["default"].Address; got != "joblet.example.com:443" {
		t.Errorf("client address %q, want the load balancer", got)
	}
	// Moving the balancer drops its old name: refused unless on purpose.
	o.PublicAddress = "lb.example.com"
	if _, err := o.Fleet.Bootstrap(context.Background(), o.BootstrapOptions); err == nil || !strings.Contains(err.Error(), "joblet.example.com") {
		t.Fatalf("a re-run dropping the balancer's name: %v, want it refused naming it", err)
	}
	o.Reconfigure = true
	bootstrap(t, o)
	rnx, _ = config.LoadRnx(filepath.Join(o.Home, "config", "rnx-config.yml"))
	if got := rnx.Nodes["reader"].Address; got != "lb.example.com:50123" {
		t.Errorf("client address %q, want the LB with the node port", got)
	}
}

func TestForceRegenerateKeepsPrevious(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	st, _ := secretstore.NewDirStore(dir)
	o := opts(t, st)
	first := bootstrap(t, o)
	o.Force = true
	second := bootstrap(t, o)
	if fingerprint(first, "CA Certificate") == fingerprint(second, "CA Certificate") {
		t.Fatal("FORCE_REGENERATE kept the CA")
	}
	for name, a := range actions(second) {
		if a != certs.Generated {
			t.Errorf("%s: %s", name, a)
		}
	}
	prev, err := st.GetStage(context.Background(), []string{names.CACert()}, secretstore.Previous)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := pki.ParseCert([]byte(prev[names.CACert()]))
	if got := item(first, "CA Certificate").Serial; pki.SerialHex(c.SerialNumber) != got {
		t.Errorf("previous CA serial %s, want the first CA's %s", pki.SerialHex(c.SerialNumber), got)
	}
	// A plain re-run afterwards adopts the new CA.
	o.Force = false
	third := bootstrap(t, o)
	if fingerprint(third, "CA Certificate") != fingerprint(second, "CA Certificate") {
		t.Error("re-run after force does not use the new CA")
	}
}

func item(r *certs.Result, name string) certs.Item {
	for _, it := range r.Items {
		if it.Name == name {
			return it
		}
	}
	return certs.Item{}
}

// A key stored without its certificate (a node crashed between the two
// writes) is completed by the next bootstrap.
func TestKeyWithoutCertIsCompleted(t *testing.T) {
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	first := bootstrap(t, o)
	st.Delete(names.CACert())
	st.Delete(names.ClientCert(pki.Developer))
	// The developer certificate would be for the old CA; with the CA
	// certificate re-made for the same key it still chains.
	second := bootstrap(t, opts(t, st))
	a := actions(second)
	if a["CA Certificate"] != certs.Completed || a["Client Certificate (developer)"] != certs.Completed {
		t.Fatalf("actions %v", a)
	}
	if item(first, "CA Certificate").Fingerprint == item(second, "CA Certificate").Fingerprint {
		t.Error("expected a new CA certificate for the stored key")
	}
}

// States bootstrap must report, not repair: each fails with a message naming
// the secret and the fix, and leaves files and store as they were.
func TestBadInputChangesNothing(t *testing.T) {
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	files := snapshot(t, o.Home)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")

	bad := o
	bad.AdditionalNames = []string{"good.example", "bad_name.example"}
	if _, err := boot(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "bad_name.example") {
		t.Fatalf("invalid SAN: %v", err)
	}
	bad = o
	bad.AdditionalNames = []string{"0.0.0.0"}
	if _, err := boot(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "unspecified") {
		t.Fatalf("0.0.0.0: %v", err)
	}
	bad = o
	bad.Prefix = "bad prefix"
	if _, err := boot(context.Background(), bad); err == nil || !strings.Contains(err.Error(), "invalid secret prefix") {
		t.Fatalf("bad prefix: %v", err)
	}
	sameFiles(t, files, snapshot(t, o.Home))

	// A hand-edited server config with a typo is reported, not overwritten.
	orig, _ := os.ReadFile(cfgPath)
	edited := append(append([]byte{}, orig...), []byte("srever:\n  port: 1\n")...)
	os.WriteFile(cfgPath, edited, 0o600)
	_, err := boot(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "srever") || !strings.Contains(err.Error(), "nothing was changed") {
		t.Fatalf("hand-edited config: %v", err)
	}
	if now, _ := os.ReadFile(cfgPath); !bytes.Equal(now, edited) {
		t.Fatal("the hand-edited config was overwritten")
	}
}

// A store that fails every write: nothing local is written.
type failingWrites struct{ secretstore.Store }

func (failingWrites) Create(context.Context, secretstore.Secret) error {
	return errors.New("AccessDeniedException: not allowed")
}

func TestStoreFailureWritesNoFiles(t *testing.T) {
	o := opts(t, failingWrites{storetest.NewMemoryStore()})
	_, err := boot(context.Background(), o)
	if err == nil || !strings.Contains(err.Error(), "AccessDenied") || !strings.Contains(err.Error(), "joblet/ca-key") {
		t.Fatalf("err = %v", err)
	}
	if _, err := os.Stat(filepath.Join(o.Home, "config")); !os.IsNotExist(err) {
		t.Fatal("config directory created despite the failure")
	}
}

func TestConfigSettingsSurviveRerun(t *testing.T) {
	o := opts(t, storetest.NewMemoryStore())
	bootstrap(t, o)
	p := filepath.Join(o.Home, "config", "joblet-config.yml")
	s, _ := config.LoadServer(p)
	s.Jobs.LogBufferBytes = 4096
	b, _ := s.Marshal()
	os.WriteFile(p, b, 0o600)
	bootstrap(t, o)
	s2, _ := config.LoadServer(p)
	if s2.Jobs.LogBufferBytes != 4096 {
		t.Error("operator setting lost on re-run")
	}
}

func TestCappedLifetimeWarns(t *testing.T) {
	o := opts(t, storetest.NewMemoryStore())
	o.CALifetime = 10 * 24 * time.Hour
	res := bootstrap(t, o)
	if len(res.Warnings) != 5 { // four client certificates and the server's
		t.Fatalf("warnings: %v", res.Warnings)
	}
	ca := item(res, "CA Certificate").NotAfter
	if got := item(res, "Server Certificate").NotAfter; !got.Equal(ca) {
		t.Errorf("server notAfter %v, CA %v", got, ca)
	}
}

// Concurrent first bootstraps on one directory store end with one CA and
// every node's server certificate chaining to it.
func TestConcurrentBootstrapsConvergeOnOneCA(t *testing.T) {
	st, _ := secretstore.NewDirStore(filepath.Join(t.TempDir(), "store"))
	const n = 20
	var wg sync.WaitGroup
	results := make([]*certs.Result, n)
	errs := make([]error, n)
	homes := make([]string, n)
	for i := 0; i < n; i++ {
		o := opts(t, st)
		homes[i] = o.Home
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			results[i], errs[i] = boot(context.Background(), o)
		}(i)
	}
	wg.Wait()
	generated := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		if item(results[i], "CA Certificate").Action == certs.Generated {
			generated++
		}
	}
	if generated != 1 {
		t.Errorf("%d nodes report generating the CA, want 1", generated)
	}
	vals, _ := st.Get(context.Background(), names.All())
	caCert, _ := pki.ParseCert([]byte(vals[names.CACert()]))
	caKey, _ := pki.ParseKey([]byte(vals[names.CAKey()]))
	if err := pki.MatchesKey(caCert, caKey); err != nil {
		t.Fatal(err)
	}
	for _, home := range homes {
		s, err := config.LoadServer(filepath.Join(home, "config", "joblet-config.yml"))
		if err != nil {
			t.Fatal(err)
		}
		if s.Security.CACert != vals[names.CACert()] {
			t.Fatal("a node wrote a CA other than the stored one")
		}
		leaf, chain, _ := pki.ParseChain([]byte(s.Security.ServerCert))
		if err := pki.VerifyLeaf(leaf, []*x509.Certificate{caCert}, x509.ExtKeyUsageServerAuth, time.Now(), chain...); err != nil {
			t.Fatal(err)
		}
	}
}

// Re-bootstrapping an installed node against a store of another fleet (as
// a user-data script without the store flags did: it silently made a new
// private CA) is refused with both named and nothing changed; --move-node
// does it on purpose, and the same CA in another store is not a fork.
func TestRebootstrapNeverForksSilently(t *testing.T) {
	ctx := context.Background()
	o := opts(t, storetest.NewMemoryStore())
	o.StoreRef = config.StoreRef{Kind: "dir", Dir: "/srv/pki"}
	bootstrap(t, o)
	files := snapshot(t, o.Home)

	// An empty store (auto mode deciding "embedded" on a re-run): nothing
	// is created in it, nothing local changes.
	other := o
	other.Store, other.StoreDesc = storetest.NewMemoryStore(), "another store"
	other.StoreRef = config.StoreRef{Kind: "dir", Dir: filepath.Join(o.Home, "ca")}
	_, err := boot(ctx, other)
	if !errors.Is(err, certs.ErrUsage) || !strings.Contains(err.Error(), "no fleet at all") || !strings.Contains(err.Error(), "--move-node") {
		t.Fatalf("re-bootstrap against an empty store: %v", err)
	}
	if got, _ := other.Store.Get(ctx, names.All()); len(got) != 0 {
		t.Fatalf("the refused run wrote %d secrets into the other store", len(got))
	}
	sameFiles(t, files, snapshot(t, o.Home))

	// A store holding another fleet.
	stranger := opts(t, other.Store)
	bootstrap(t, stranger)
	before, _ := other.Store.Get(ctx, names.All())
	_, err = boot(ctx, other)
	if !errors.Is(err, certs.ErrUsage) || !strings.Contains(err.Error(), "/srv/pki") || !strings.Contains(err.Error(), "another CA") ||
		!strings.Contains(err.Error(), "--move-node") {
		t.Fatalf("re-bootstrap against another fleet: %v", err)
	}
	if after, _ := other.Store.Get(ctx, names.All()); !maps.Equal(before, after) {
		t.Fatal("the refused run changed the other fleet's store")
	}
	sameFiles(t, files, snapshot(t, o.Home))
	reliability.Record(t, "bad input", "re-bootstrap an installed node against a store of another fleet",
		"refused, nothing changed: "+err.Error())

	// The same CA imported into another store: the node follows it.
	moved := o
	moved.Store, moved.StoreDesc = storetest.NewMemoryStore(), "the store it moved to"
	moved.StoreRef = config.StoreRef{Kind: "secretsmanager", Region: "us-east-1"}
	vals, _ := o.Store.Get(ctx, names.All())
	m := &certs.Material{CACert: vals[names.CACert()], CAKey: vals[names.CAKey()], Clients: map[pki.Role][2]string{}}
	if _, err := (&certs.Fleet{Store: moved.Store}).Import(ctx, m, false); err != nil {
		t.Fatal(err)
	}
	bootstrap(t, moved)

	// Joining another fleet on purpose.
	other.MoveNode = true
	bootstrap(t, other)
}
