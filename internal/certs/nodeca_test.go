package certs_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// nodePolicyStore refuses, as the node IAM policy does, every read outside
// what a node may read (Names.Node) and every write; it records what was
// asked.
type nodePolicyStore struct {
	*storetest.MemoryStore
	mu    sync.Mutex
	asked []string
}

func (s *nodePolicyStore) check(op string, names []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.asked = append(s.asked, op+" "+n)
		if !slices.Contains(names_.Node(), n) {
			return fmt.Errorf("%s on %s: %w", op, n, secretstore.ErrAccessDenied)
		}
	}
	return nil
}

var names_ = certs.Names{Prefix: "joblet"}

func (s *nodePolicyStore) Get(ctx context.Context, n []string) (map[string]string, error) {
	if err := s.check("get", n); err != nil {
		return nil, err
	}
	return s.MemoryStore.Get(ctx, n)
}

func (s *nodePolicyStore) GetStage(ctx context.Context, n []string, st secretstore.Stage) (map[string]string, error) {
	if err := s.check("get-stage", n); err != nil {
		return nil, err
	}
	return s.MemoryStore.GetStage(ctx, n, st)
}

func (s *nodePolicyStore) Create(ctx context.Context, sec secretstore.Secret) error {
	return s.check("create", []string{"(write) " + sec.Name})
}

func (s *nodePolicyStore) Put(ctx context.Context, name, v string) error {
	return s.check("put", []string{"(write) " + name})
}

// privateKeys counts the PEM private keys in every file under dir.
func privateKeys(t *testing.T, dir string) (int, []string) {
	t.Helper()
	n, files := 0, []string(nil)
	for p, b := range snapshot(t, dir) {
		files = append(files, filepath.Base(p))
		n += strings.Count(string(b), "PRIVATE KEY-----\n") / 2
	}
	slices.Sort(files)
	return n, files
}

// A node that joins a fleet, under the node policy, serves and renews
// with one private key on disk, its own, and reads nothing else: not the
// root's key, not a client key.
func TestJoiningNodeHoldsOneKey(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemoryStore()
	first := opts(t, mem)
	first.Mode = "dir"
	res := bootstrap(t, first)
	if actions(res)["Node-issuing CA"] != certs.Generated {
		t.Fatalf("the first node did not create the node-issuing CA: %v", actions(res))
	}
	// The node that created the fleet keeps the client configs (the
	// spec's "copy it from the first node"), and says it should not.
	if len(res.Files) != 6 || len(res.Warnings) != 1 || !strings.Contains(res.Warnings[0], "hold the role keys") {
		t.Fatalf("creator files %v, warnings %q", res.Files, res.Warnings)
	}

	st := &nodePolicyStore{MemoryStore: mem}
	join := opts(t, st)
	join.Mode, join.StoreRef = "dir", config.StoreRef{Kind: "dir", Dir: "/shared/pki"}
	res = bootstrap(t, join)
	if got := actions(res); got["Node-issuing CA"] != certs.Retrieved || got["Server Certificate"] != certs.Generated || len(got) != 3 {
		t.Fatalf("joining node: %v", got)
	}
	keys, files := privateKeys(t, join.Home)
	if keys != 1 || len(files) != 1 || files[0] != "joblet-config.yml" {
		t.Fatalf("a joined node holds %d private keys in %v; want 1 (its own) in joblet-config.yml", keys, files)
	}
	cfgPath := filepath.Join(join.Home, "config", "joblet-config.yml")
	srv, err := config.LoadServer(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	leaf, chain, err := pki.ParseChain([]byte(srv.Security.ServerCert))
	if err != nil || len(chain) != 1 || chain[0].Subject.CommonName != pki.NodeCACommonName {
		t.Fatalf("served chain: %d intermediates, %v", len(chain), err)
	}
	roots, _ := pki.ParseCerts([]byte(srv.Security.CACert))
	if err := pki.VerifyLeaf(leaf, roots, x509.ExtKeyUsageServerAuth, time.Now(), chain...); err != nil {
		t.Fatal(err)
	}
	if leaf.NotAfter.Sub(leaf.NotBefore) > 8*24*time.Hour {
		t.Errorf("a fleet node's server certificate lives %v, want days", leaf.NotAfter.Sub(leaf.NotBefore))
	}

	// Renewal, forced and when due, under the same policy.
	fl := &certs.Fleet{Store: st}
	r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Force: true})
	if err != nil || !r.Renewed {
		t.Fatalf("forced renewal under the node policy: %+v %v", r, err)
	}
	late := &certs.Fleet{Store: st, Now: func() time.Time { return time.Now().Add(5 * 24 * time.Hour) }}
	if r, err = late.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil || !r.Renewed || !strings.Contains(r.Reason, "two thirds") {
		t.Fatalf("renewal at two thirds: %+v %v", r, err)
	}
	rep := fl.Status(ctx, certs.StatusOptions{ServerConfig: cfgPath, WarnDays: 1})
	for _, a := range st.asked {
		if strings.Contains(a, "(write)") || strings.HasSuffix(a, "/ca-key") || strings.Contains(a, "client-") {
			t.Errorf("the node asked for %s", a)
		}
	}
	if rep.Level != certs.OK {
		t.Fatalf("status on a joined node: %v", rep.Problems)
	}
	t.Logf("a joined node made %d reads, all inside the node policy; holds %d private key", len(st.asked), keys)
}

// Nodes of a burst against an empty store: one creates the fleet and keeps
// the client configs; every other node ends with its own key only.
func TestBurstLeavesRoleKeysOnTheCreatorOnly(t *testing.T) {
	st := storetest.NewMemoryStore()
	const n = 6
	homes := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		o := opts(t, st)
		o.Mode = "dir"
		homes[i] = o.Home
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := boot(context.Background(), o)
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	holders := 0
	for _, h := range homes {
		keys, _ := privateKeys(t, h)
		switch keys {
		case 1:
		case 1 + 8: // the operator copy and one file per role
			holders++
		default:
			t.Errorf("%s holds %d private keys", h, keys)
		}
	}
	if holders != 1 {
		t.Fatalf("%d nodes hold role keys, want exactly the creator", holders)
	}
}

// A fleet made before the node-issuing CA (testdata/legacy: a pathlen 0
// root, no node-issuing pair) keeps working as it did, and `certs node-ca`
// moves it in two steps: the root re-issued for the same key (nothing
// breaks: an old config still verifies a node), then the node-issuing CA,
// which nodes renew from; after that a node needs no root key.
func TestLegacyFleetMovesToNodeCA(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemoryStore()
	for k, v := range readVectorSecrets(t, "testdata/legacy") {
		mem.Set(k, v)
	}
	o := opts(t, mem)
	o.Mode = "dir"
	res := bootstrap(t, o)
	if _, ok := actions(res)["Node-issuing CA"]; ok || len(res.Warnings) == 0 || !strings.Contains(res.Warnings[0], "joblet certs node-ca") {
		t.Fatalf("legacy bootstrap: %v %q", actions(res), res.Warnings)
	}
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	srv, _ := config.LoadServer(cfgPath)
	if _, chain, _ := pki.ParseChain([]byte(srv.Security.ServerCert)); len(chain) != 0 {
		t.Fatal("a legacy fleet's node serves a chain")
	}
	oldRnx, err := config.LoadRnx(filepath.Join(o.Home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	oldTrust, _ := pki.ParseCerts([]byte(oldRnx.Nodes["default"].CA))
	fl := &certs.Fleet{Store: mem}
	rep := fl.Status(ctx, certs.StatusOptions{ServerConfig: cfgPath, WarnDays: 1})
	if !strings.Contains(strings.Join(rep.Problems, "\n"), "made before node-issuing CAs") {
		t.Errorf("status says nothing of the legacy root: %q", rep.Problems)
	}

	step := func(want string) *certs.NodeCAResult {
		t.Helper()
		r, err := fl.NodeCA(ctx)
		if err != nil || r.Step != want {
			t.Fatalf("node-ca: %+v %v, want step %s", r, err, want)
		}
		return r
	}
	step(certs.StepRootReissued)
	r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	if err != nil || !r.TrustChanged || r.Renewed {
		t.Fatalf("refresh after the root re-issue: %+v %v", r, err)
	}
	srv, _ = config.LoadServer(cfgPath)
	leaf, _ := pki.ParseLeaf([]byte(srv.Security.ServerCert))
	if err := pki.VerifyLeaf(leaf, oldTrust, x509.ExtKeyUsageServerAuth, time.Now()); err != nil {
		t.Fatalf("a config from before the re-issue no longer verifies the node: %v", err)
	}
	client, _ := pki.ParseCert([]byte(oldRnx.Nodes["default"].Cert))
	newTrust, _ := pki.ParseCerts([]byte(srv.Security.CACert))
	if err := pki.VerifyLeaf(client, newTrust, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
		t.Fatalf("the node refuses a client certificate from before the re-issue: %v", err)
	}

	// A node bootstrapping between the steps (clients are refreshing) does
	// not start the node-issuing CA early: it signs with the root, as the
	// fleet's nodes still do, and says why.
	mid := opts(t, mem)
	mid.Mode = "dir"
	midRes := bootstrap(t, mid)
	if got, _ := mem.Get(ctx, []string{names.NodeCACert(), names.NodeCAKey()}); len(got) != 0 || !strings.Contains(strings.Join(midRes.Warnings, "\n"), "no node-issuing CA yet") {
		t.Fatalf("a bootstrap between the steps: store %v, warnings %q", got, midRes.Warnings)
	}

	created := step(certs.StepNodeCACreated)
	// The node now renews from the node-issuing CA, reading only what the
	// tightened node policy allows.
	st := &nodePolicyStore{MemoryStore: mem}
	r, err = (&certs.Fleet{Store: st}).RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath})
	if err != nil || !r.Renewed || r.Reason != "the fleet has a node-issuing CA to renew from" {
		t.Fatalf("refresh after the node-issuing CA: %+v %v", r, err)
	}
	srv, _ = config.LoadServer(cfgPath)
	leaf, chain, _ := pki.ParseChain([]byte(srv.Security.ServerCert))
	if len(chain) != 1 || pki.Fingerprint(chain[0]) != created.NodeCA.Fingerprint {
		t.Fatal("the node does not serve the node-issuing CA's chain")
	}
	if err := pki.VerifyLeaf(leaf, newTrust, x509.ExtKeyUsageServerAuth, time.Now(), chain...); err != nil {
		t.Fatal(err)
	}
	step(certs.StepNothing)
}

// oldPolicyStore allows what the node policy allowed before the
// node-issuing CA: the CA pair, every role's pair, the bundle and the CRL.
type oldPolicyStore struct{ *storetest.MemoryStore }

func (s oldPolicyStore) allowed(names []string) error {
	ok := append(append([]string{}, names_.CACert(), names_.CAKey(), names_.Bundle(), names_.CRL()), func() []string {
		var out []string
		for _, r := range pki.Roles {
			out = append(out, names_.ClientCert(r), names_.ClientKey(r))
		}
		return out
	}()...)
	for _, n := range names {
		if !slices.Contains(ok, n) {
			return fmt.Errorf("read %s: %w", n, secretstore.ErrAccessDenied)
		}
	}
	return nil
}

func (s oldPolicyStore) Get(ctx context.Context, n []string) (map[string]string, error) {
	if err := s.allowed(n); err != nil {
		return nil, err
	}
	return s.MemoryStore.Get(ctx, n)
}

func (s oldPolicyStore) GetStage(ctx context.Context, n []string, st secretstore.Stage) (map[string]string, error) {
	if err := s.allowed(n); err != nil {
		return nil, err
	}
	return s.MemoryStore.GetStage(ctx, n, st)
}

// An upgraded node of a fleet from before the node-issuing CA, still on
// its old IAM policy, joins, refreshes and reports as before.
func TestUpgradedNodeOnItsOldPolicy(t *testing.T) {
	ctx := context.Background()
	mem := storetest.NewMemoryStore()
	for k, v := range readVectorSecrets(t, "testdata/legacy") {
		mem.Set(k, v)
	}
	st := oldPolicyStore{mem}
	o := opts(t, st)
	o.Mode, o.StoreRef = "dir", config.StoreRef{Kind: "dir", Dir: "/shared/pki"}
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	fl := &certs.Fleet{Store: st}
	if r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Force: true}); err != nil || !r.Renewed {
		t.Fatalf("refresh on the old policy: %+v %v", r, err)
	}
	if rep := fl.Status(ctx, certs.StatusOptions{ServerConfig: cfgPath, WarnDays: 1}); rep.Level == certs.Broken {
		t.Fatalf("status on the old policy: %q", rep.Problems)
	}
}

// After a node is stolen, the node-issuing CA gets a new key; nodes renew
// from it, and revoking the old one refuses every chain through it.
func TestRekeyNodeCA(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	before, _ := config.LoadServer(cfgPath)
	_, oldChain, _ := pki.ParseChain([]byte(before.Security.ServerCert))
	fl := &certs.Fleet{Store: st}
	res, err := fl.RekeyNodeCA(ctx)
	if err != nil || res.Replaced.Serial != pki.SerialHex(oldChain[0].SerialNumber) {
		t.Fatalf("rekey: %+v %v", res, err)
	}
	if r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil || !r.Renewed {
		t.Fatalf("refresh after the rekey: %+v %v", r, err)
	}
	after, _ := config.LoadServer(cfgPath)
	leaf, chain, _ := pki.ParseChain([]byte(after.Security.ServerCert))
	if chain[0].Equal(oldChain[0]) || pki.MatchesKey(chain[0], mustKey(t, st)) != nil {
		t.Fatal("the node does not serve from the new node-issuing CA")
	}
	serial, _ := pki.ParseSerial(res.Replaced.Serial)
	if _, err := fl.Revoke(ctx, serial, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	after, _ = config.LoadServer(cfgPath)
	roots, _ := pki.ParseCerts([]byte(after.Security.CACert))
	creds := mustCreds(t, after)
	oldLeaf, _, _ := pki.ParseChain([]byte(before.Security.ServerCert))
	for what, c := range map[string][]*x509.Certificate{"old": {oldLeaf, oldChain[0]}, "new": {leaf, chain[0]}} {
		inter := x509.NewCertPool()
		inter.AddCert(c[1])
		pool := x509.NewCertPool()
		for _, r := range roots {
			pool.AddCert(r)
		}
		chains, err := c[0].Verify(x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if err == nil {
			err = pki.CheckChainsNotRevoked(chains, creds)
		}
		if (what == "old") != (err != nil) {
			t.Errorf("%s chain: %v", what, err)
		}
	}
}

func mustKey(t *testing.T, st secretstore.Store) crypto.Signer {
	t.Helper()
	got, _ := st.Get(context.Background(), []string{names.NodeCAKey()})
	k, err := pki.ParseKey([]byte(got[names.NodeCAKey()]))
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// mustCreds is the revoked serials of a server config's CRL.
func mustCreds(t *testing.T, srv *config.Server) map[string]bool {
	t.Helper()
	cas, _ := pki.ParseCerts([]byte(srv.Security.CACert))
	crl, err := pki.ParseCRL([]byte(srv.Security.CRL), cas)
	if err != nil {
		t.Fatal(err)
	}
	return pki.RevokedSerials(crl)
}

// A CA added to the trust bundle by a store write, not by a rotation, is
// reported as broken, not shown as a rotation in progress.
func TestStatusFlagsAForeignCAInTheBundle(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st))
	fl := &certs.Fleet{Store: st}
	if rep := fl.Status(ctx, certs.StatusOptions{}); rep.Level != certs.OK {
		t.Fatalf("before: %q", rep.Problems)
	}
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	foreign, _ := pki.NewCA(k, time.Now(), time.Hour*24)
	cur, _ := st.Get(ctx, []string{names.CACert()})
	st.Set(names.Bundle(), cur[names.CACert()]+string(pki.EncodeCert(foreign)))
	rep := fl.Status(ctx, certs.StatusOptions{})
	if rep.Level != certs.Broken || !strings.Contains(strings.Join(rep.Problems, "\n"), "never held as its current, pending or previous version") {
		t.Fatalf("a foreign CA in the bundle: level %d, %q", rep.Level, rep.Problems)
	}
	// A rotation's CAs are not flagged, in any phase.
	st2 := storetest.NewMemoryStore()
	bootstrap(t, opts(t, st2))
	r := rotation{f: &certs.Fleet{Store: st2}}
	for _, step := range []func(context.Context) (*certs.RotationStatus, error){r.Begin, r.Promote, r.Finish} {
		if _, err := step(ctx); err != nil {
			t.Fatal(err)
		}
		if rep := r.f.Status(ctx, certs.StatusOptions{}); strings.Contains(strings.Join(rep.Problems, "\n"), "never held") {
			t.Fatalf("a rotation flagged: %q", rep.Problems)
		}
	}
}

// The old node-issuing pair put back after a re-key and the revocation of
// its serial: a node does not renew from it (clients would refuse what it
// signs) and says why.
func TestNodeDoesNotRenewFromAnUnlistedNodeCA(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	old, _ := st.Get(ctx, []string{names.NodeCACert(), names.NodeCAKey()})
	time.Sleep(1100 * time.Millisecond) // states and certificates count whole seconds
	fl := &certs.Fleet{Store: st}
	res, err := fl.RekeyNodeCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := pki.ParseSerial(res.Replaced.Serial)
	if _, err := fl.Revoke(ctx, serial, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil {
		t.Fatal(err)
	}
	st.Set(names.NodeCACert(), old[names.NodeCACert()])
	st.Set(names.NodeCAKey(), old[names.NodeCAKey()])
	r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath, Force: true})
	if err != nil && !strings.Contains(err.Error(), "revoked") {
		t.Fatal(err)
	}
	if err == nil && (r.Renewed || !strings.Contains(r.RenewProblem, "not listed")) {
		t.Fatalf("a forced renewal from the old node-issuing pair put back: renewed %v, problem %q", r.Renewed, r.RenewProblem)
	}
}
