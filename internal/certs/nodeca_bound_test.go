package certs_test

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// A fleet made by `certs init` in a directory store: its node-issuing CA
// may sign for the defaults and the balancer's name. A node joining with
// a name outside them is refused, naming the name and the flag, with
// nothing written to the store or the node's home; once the operator
// widens them (a re-issue for the same key, which keeps the others), the
// join succeeds and a node already there renews onto the re-issued CA.
func TestJoinOutsideNodeCANamesIsRefused(t *testing.T) {
	ctx := context.Background()
	storeDir := filepath.Join(t.TempDir(), "store")
	st, err := secretstore.NewDirStore(storeDir)
	if err != nil {
		t.Fatal(err)
	}
	op := &certs.Fleet{Store: st, StoreDesc: "dir"}
	if _, err := op.Init(ctx, certs.InitOptions{Dir: t.TempDir(), Address: "lb.example.net:443"}); err != nil {
		t.Fatal(err)
	}
	got, _ := st.Get(ctx, []string{names.NodeCACert()})
	nca, _ := pki.ParseCert([]byte(got[names.NodeCACert()]))
	nc, ok := pki.NodeConstraintsOf(nca)
	if !ok || strings.Join(nc.Strings(), " ") != "localhost joblet .internal lb.example.net 10.0.0.0/8 172.16.0.0/12 192.168.0.0/16 fc00::/7 127.0.0.0/8 ::1/128" {
		t.Fatalf("the node-issuing CA permits %v", nc.Strings())
	}
	if life := nca.NotAfter.Sub(nca.NotBefore); life > pki.DefaultNodeCALifetime+5*time.Minute {
		t.Fatalf("the node-issuing CA lives %v", life)
	}

	node := func(extra ...string) bootOpts {
		o := opts(t, st)
		o.Mode, o.StoreRef = config.ModeDir, config.StoreRef{Kind: config.ModeDir, Dir: storeDir}
		o.PublicAddress, o.AdditionalNames = "lb.example.net:443", extra
		return o
	}
	first := node("node-1.lb.example.net", "ip-10-1-2-3.ec2.internal")
	bootstrap(t, first)

	storeBefore, out := snapshot(t, storeDir), node("www.example.com")
	_, err = boot(ctx, out)
	if !errors.Is(err, certs.ErrUsage) || !strings.Contains(err.Error(), `"www.example.com"`) || !strings.Contains(err.Error(), "joblet certs node-ca --permit-server-names www.example.com") {
		t.Fatalf("a join naming www.example.com: %v", err)
	}
	t.Logf("refused: %v", err)
	sameFiles(t, storeBefore, snapshot(t, storeDir))
	if files := snapshot(t, out.Home); len(files) != 0 {
		t.Fatalf("the refused node wrote %d files", len(files))
	}
	for _, name := range []string{"8.8.8.8", "*.com"} {
		if _, err := boot(ctx, node(name)); !errors.Is(err, certs.ErrUsage) || !strings.Contains(err.Error(), name) {
			t.Errorf("a join naming %s: %v", name, err)
		}
	}

	op.PermitNames, _ = pki.ParseNameConstraints([]string{"www.example.com"})
	res, err := op.NodeCA(ctx)
	if err != nil || res.Step != certs.StepNodeCAWidened || !strings.Contains(strings.Join(res.Permitted, " "), "lb.example.net www.example.com") ||
		!res.NodeCA.NotAfter.Equal(nca.NotAfter) {
		t.Fatalf("widening (for the same key, in the same window: until %s): %+v %v", nca.NotAfter, res, err)
	}
	bootstrap(t, out)
	cfgPath := filepath.Join(first.Home, "config", "joblet-config.yml")
	r, err := (&certs.Fleet{Store: st}).RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	if err != nil || !r.Renewed {
		t.Fatalf("the first node after the re-issue: %+v %v", r, err)
	}
	srv, _ := config.LoadServer(cfgPath)
	leaf, chain, _ := pki.ParseChain([]byte(srv.Security.ServerCert))
	roots, _ := pki.ParseCerts([]byte(srv.Security.CACert))
	if pki.Fingerprint(chain[0]) != res.NodeCA.Fingerprint {
		t.Fatal("the first node does not serve from the re-issued node-issuing CA")
	}
	if err := pki.VerifyLeaf(leaf, roots, x509.ExtKeyUsageServerAuth, time.Now(), chain...); err != nil {
		t.Fatal(err)
	}
	if res, _ := op.NodeCA(ctx); res.Step != certs.StepNothing {
		t.Fatalf("a second widening run: %s", res.Step)
	}
}

// crashStore fails the write of one secret once, after the writes before it
// went through: a crash between a re-key's key and its certificate.
type crashStore struct {
	*storetest.MemoryStore
	cut string
}

func (s *crashStore) Put(ctx context.Context, name, v string) error {
	if name == s.cut {
		s.cut = ""
		return errors.New("crashed")
	}
	return s.MemoryStore.Put(ctx, name, v)
}

// The scheduled run: nothing to do until the node-issuing CA is due, then
// one new key, then nothing again; a run that crashed between the key
// and the certificate is completed by the next for the key it wrote (one
// new key, not two). A node renews onto the new CA, which its clients'
// unchanged trust (the root) verifies.
func TestScheduledNodeCARekey(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemoryStore()
	st := &crashStore{MemoryStore: mem}
	o := opts(t, st)
	o.Mode = config.ModeDir
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	start := time.Now()
	at := func(d time.Duration) *certs.Fleet {
		return &certs.Fleet{Store: st, Now: func() time.Time { return start.Add(d) }}
	}
	pair := func() (string, string) {
		got, _ := mem.Get(ctx, []string{names.NodeCAKey(), names.NodeCACert()})
		return got[names.NodeCAKey()], got[names.NodeCACert()]
	}
	key0, cert0 := pair()
	res, err := at(6 * 24 * time.Hour).RekeyNodeCAIfDue(ctx)
	if err != nil || res.Step != certs.StepNothing || res.DueAt == nil || !strings.HasPrefix(res.Next, "nothing to do") {
		t.Fatalf("before it is due: %+v %v", res, err)
	}
	if k, c := pair(); k != key0 || c != cert0 {
		t.Fatal("a run with nothing to do wrote")
	}

	due := 7*24*time.Hour + time.Minute
	rep := at(due).Status(ctx, certs.StatusOptions{WarnDays: 30})
	var nodeCA *certs.CertReport
	for i := range rep.Certificates {
		if rep.Certificates[i].Name == "Node-issuing CA" {
			nodeCA = &rep.Certificates[i]
		}
	}
	if rep.Level != certs.Attention || nodeCA == nil || nodeCA.Level != certs.Attention || !strings.Contains(strings.Join(nodeCA.Problems, ""), "--rekey --if-due") ||
		nodeCA.DueAt == nil || !slices.Contains(nodeCA.Permitted, ".internal") {
		t.Fatalf("status once due: %d %q %+v", rep.Level, rep.Problems, nodeCA)
	}
	if rep := at(time.Hour).Status(ctx, certs.StatusOptions{WarnDays: 30}); rep.Level != certs.OK {
		t.Fatalf("status of a 14-day node-issuing CA with --warn-days 30: %q", rep.Problems)
	}
	st.cut = names.NodeCACert()
	if _, err := at(due).RekeyNodeCAIfDue(ctx); err == nil {
		t.Fatal("the cut run succeeded")
	}
	key1, c := pair()
	if key1 == key0 || c != cert0 {
		t.Fatal("the cut run did not stop between the key and the certificate")
	}
	if rep := at(due).Status(ctx, certs.StatusOptions{WarnDays: 30}); rep.Level != certs.Broken {
		t.Fatalf("status of a half re-key: %d %q", rep.Level, rep.Problems)
	}
	for run := range 2 {
		res, err = at(due).RekeyNodeCAIfDue(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := certs.StepNodeCARekeyed
		if run == 1 {
			want = certs.StepNothing
		}
		if res.Step != want {
			t.Fatalf("run %d after the cut: %s (%s)", run, res.Step, res.Reason)
		}
		t.Logf("run %d after the cut: %s: %s", run, res.Step, res.Reason+res.Next)
	}
	key2, cert2 := pair()
	nca, _ := pki.ParseCert([]byte(cert2))
	k2, _ := pki.ParseKey([]byte(key2))
	if key2 != key1 || pki.MatchesKey(nca, k2) != nil {
		t.Fatal("the completion made another key, or left the pair apart")
	}
	if nc, ok := pki.NodeConstraintsOf(nca); !ok || !nc.Covers(pki.DefaultNodeConstraints()) {
		t.Fatalf("the re-keyed CA permits %v", nc.Strings())
	}
	if rep := at(due).Status(ctx, certs.StatusOptions{WarnDays: 30}); rep.Level != certs.OK {
		t.Fatalf("status after the re-key: %q", rep.Problems)
	}

	r, err := at(due).RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	if err != nil || !r.Renewed {
		t.Fatalf("the node's refresh after the re-key: %+v %v", r, err)
	}
	srv, _ := config.LoadServer(cfgPath)
	leaf, chain, _ := pki.ParseChain([]byte(srv.Security.ServerCert))
	root, _ := mem.Get(ctx, []string{names.CACert()})
	rootCert, _ := pki.ParseCert([]byte(root[names.CACert()]))
	if !chain[0].Equal(nca) || leaf.NotAfter.After(nca.NotAfter) {
		t.Fatal("the node does not serve from the new node-issuing CA, or outlives it")
	}
	if err := pki.VerifyLeaf(leaf, []*x509.Certificate{rootCert}, x509.ExtKeyUsageServerAuth, start.Add(due), chain...); err != nil {
		t.Fatal(err)
	}
}

// A node-issuing CA made before name constraints: status says so, the
// scheduled run refuses to constrain it on its own (naming the command
// that does), and the operator's explicit re-key gives it the defaults.
func TestUnconstrainedNodeCAIsNotConstrainedOnASchedule(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	got, _ := st.Get(ctx, []string{names.CACert(), names.CAKey(), names.NodeCAKey()})
	rootCert, _ := pki.ParseCert([]byte(got[names.CACert()]))
	rootKey, _ := pki.ParseKey([]byte(got[names.CAKey()]))
	nk, _ := pki.ParseKey([]byte(got[names.NodeCAKey()]))
	old, err := (&pki.CA{Cert: rootCert, Key: rootKey}).IssueNodeCA(nk.Public(), time.Now(), pki.DefaultCALifetime, pki.NameConstraints{})
	if err != nil {
		t.Fatal(err)
	}
	st.Set(names.NodeCACert(), string(pki.EncodeCert(old.Cert)))
	fl := &certs.Fleet{Store: st}
	rep := fl.Status(ctx, certs.StatusOptions{WarnDays: 30})
	if text := strings.Join(rep.Problems, "\n"); rep.Level != certs.Attention || !strings.Contains(text, "no name constraints") || !strings.Contains(text, "longer than") {
		t.Fatalf("status: %d %q", rep.Level, rep.Problems)
	}
	if _, err := fl.RekeyNodeCAIfDue(ctx); !errors.Is(err, certs.ErrUsage) || !strings.Contains(err.Error(), "--rekey --permit-server-names") {
		t.Fatalf("the scheduled run on an unconstrained node-issuing CA: %v", err)
	}
	if k, _ := st.Get(ctx, []string{names.NodeCAKey()}); k[names.NodeCAKey()] != got[names.NodeCAKey()] {
		t.Fatal("the refused run wrote a key")
	}
	// A rotation-style re-sign for the same key keeps it as it was.
	if res, err := fl.NodeCA(ctx); err != nil || res.Step != certs.StepNothing || len(res.Permitted) != 0 {
		t.Fatalf("node-ca on it: %+v %v", res, err)
	}
	res, err := fl.RekeyNodeCA(ctx)
	if err != nil || strings.Join(res.Permitted, ",") != strings.Join(pki.DefaultNodeConstraints().Strings(), ",") {
		t.Fatalf("the explicit re-key: %+v %v", res, err)
	}
	if res, err := fl.RekeyNodeCAIfDue(ctx); err != nil || res.Step != certs.StepNothing {
		t.Fatalf("the scheduled run after it: %+v %v", res, err)
	}
}

// A fleet's first node puts its own names in the node-issuing CA it
// creates; an embedded node (its own operator) given a new name later
// widens it itself, and serves a certificate that verifies.
func TestEmbeddedNodeWidensItsNodeCA(t *testing.T) {
	o := opts(t, storetest.NewMemoryStore())
	o.AdditionalNames = []string{"node.example.org"}
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	chainOf := func() (*x509.Certificate, []*x509.Certificate, []*x509.Certificate) {
		srv, _ := config.LoadServer(cfgPath)
		leaf, chain, _ := pki.ParseChain([]byte(srv.Security.ServerCert))
		roots, _ := pki.ParseCerts([]byte(srv.Security.CACert))
		return leaf, chain, roots
	}
	_, chain, _ := chainOf()
	if nc, _ := pki.NodeConstraintsOf(chain[0]); !slices.Contains(nc.Strings(), "node.example.org") {
		t.Fatalf("the first node's names are not permitted: %v", nc.Strings())
	}
	o.AdditionalNames, o.Given, o.Reconfigure = []string{"node.example.org", "www.example.com"}, certs.GivenAdditionalNames, true
	res := bootstrap(t, o)
	if !strings.Contains(strings.Join(res.Warnings, "\n"), `re-issued to permit "www.example.com"`) {
		t.Fatalf("warnings: %q", res.Warnings)
	}
	leaf, chain, roots := chainOf()
	if err := pki.VerifyLeaf(leaf, roots, x509.ExtKeyUsageServerAuth, time.Now(), chain...); err != nil || !slices.Contains(leaf.DNSNames, "www.example.com") {
		t.Fatalf("the widened node: %v %v", leaf.DNSNames, err)
	}
}

// A node-issuing CA that expired (its schedule stopped) gets a new key
// from `certs node-ca`, never a new certificate for the old key.
func TestExpiredNodeCAGetsANewKey(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	before, _ := st.Get(ctx, []string{names.NodeCAKey()})
	late := &certs.Fleet{Store: st, Now: func() time.Time { return time.Now().Add(15 * 24 * time.Hour) }}
	if rep := late.Status(ctx, certs.StatusOptions{WarnDays: 30}); rep.Level != certs.Broken {
		t.Fatalf("status of an expired node-issuing CA: %d %q", rep.Level, rep.Problems)
	}
	res, err := late.NodeCA(ctx)
	if err != nil || res.Step != certs.StepNodeCARekeyed || res.Reason != "it had expired" {
		t.Fatalf("node-ca on an expired node-issuing CA: %+v %v", res, err)
	}
	after, _ := st.Get(ctx, []string{names.NodeCAKey()})
	if after[names.NodeCAKey()] == before[names.NodeCAKey()] {
		t.Fatal("the expired key was kept")
	}
	// (The trust state, signed when the fleet was made, is due by now:
	// only the node-issuing CA is looked at.)
	if rep := late.Status(ctx, certs.StatusOptions{WarnDays: 30}); rep.Level == certs.Broken || strings.Contains(strings.Join(rep.Problems, "\n"), "Node-issuing CA") {
		t.Fatalf("status after: %q", rep.Problems)
	}
}

// A node whose names fall outside the constraints an operator's re-key
// gave a node-issuing CA made before them cannot renew: its refresh says
// why and writes nothing (it keeps serving what it has), and status on
// the node is broken, naming the name and the way out.
func TestNodeOutsideTheNamesCannotRenew(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	got, _ := st.Get(ctx, []string{names.CACert(), names.CAKey(), names.NodeCAKey()})
	rootCert, _ := pki.ParseCert([]byte(got[names.CACert()]))
	rootKey, _ := pki.ParseKey([]byte(got[names.CAKey()]))
	nk, _ := pki.ParseKey([]byte(got[names.NodeCAKey()]))
	legacy, _ := (&pki.CA{Cert: rootCert, Key: rootKey}).IssueNodeCA(nk.Public(), time.Now(), pki.DefaultCALifetime, pki.NameConstraints{})
	st.Set(names.NodeCACert(), string(pki.EncodeCert(legacy.Cert)))
	o := opts(t, &nodePolicyStore{MemoryStore: st})
	o.Mode, o.StoreRef, o.AdditionalNames = config.ModeDir, config.StoreRef{Kind: config.ModeDir, Dir: "/shared/pki"}, []string{"jobs.example.com"}
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")

	if _, err := (&certs.Fleet{Store: st}).RekeyNodeCA(ctx); err != nil {
		t.Fatal(err)
	}
	node := &certs.Fleet{Store: &nodePolicyStore{MemoryStore: st}}
	before := snapshot(t, o.Home)
	_, err := node.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	if !errors.Is(err, pki.ErrNameNotPermitted) || !strings.Contains(err.Error(), "jobs.example.com") {
		t.Fatalf("the refresh of a node outside the names: %v", err)
	}
	sameFiles(t, before, snapshot(t, o.Home))
	rep := node.Status(ctx, certs.StatusOptions{ServerConfig: cfgPath, WarnDays: 30})
	if text := strings.Join(rep.Problems, "\n"); rep.Level != certs.Broken || !strings.Contains(text, "cannot be renewed") || !strings.Contains(text, "--permit-server-names") {
		t.Fatalf("status: %d %q", rep.Level, rep.Problems)
	}
	// Widened, the node renews.
	op := &certs.Fleet{Store: st}
	op.PermitNames, _ = pki.ParseNameConstraints([]string{"jobs.example.com"})
	if res, err := op.NodeCA(ctx); err != nil || res.Step != certs.StepNodeCAWidened {
		t.Fatalf("widening: %+v %v", res, err)
	}
	if r, err := node.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil || !r.Renewed {
		t.Fatalf("the refresh once widened: %+v %v", r, err)
	}
}
