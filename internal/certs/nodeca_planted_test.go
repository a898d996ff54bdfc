package certs_test

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// plantWatch fails the test the moment any write carries a certificate
// for the planted key: in a secret (a node-issuing CA certificate) or in a
// trust state (listed as a node-issuing CA, a root or a lineage link).
type plantWatch struct {
	*storetest.MemoryStore
	t       *testing.T
	planted crypto.PublicKey
}

func certsIn(value string) []*x509.Certificate {
	if t, err := pki.PeekTrust([]byte(value), names.Prefix); err == nil {
		return append(append(append([]*x509.Certificate{}, t.NodeCACerts()...), t.RootCerts()...), t.LineageCerts()...)
	}
	cs, _ := pki.ParseCerts([]byte(value))
	return cs
}

func (s *plantWatch) check(name, value string) {
	s.t.Helper()
	if s.planted == nil {
		return
	}
	for _, c := range certsIn(value) {
		if pub, ok := c.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); ok && pub.Equal(s.planted) {
			s.t.Fatalf("the write of %s carries a certificate (%q, serial %s) for the planted key", name, c.Subject.CommonName, pki.SerialHex(c.SerialNumber))
		}
	}
}

func (s *plantWatch) Create(ctx context.Context, sec secretstore.Secret) error {
	s.check(sec.Name, sec.Value)
	return s.MemoryStore.Create(ctx, sec)
}
func (s *plantWatch) Put(ctx context.Context, name, value string) error {
	s.check(name, value)
	return s.MemoryStore.Put(ctx, name, value)
}
func (s *plantWatch) PutPending(ctx context.Context, name, value string) error {
	s.check(name, value)
	return s.MemoryStore.PutPending(ctx, name, value)
}

// storedTrust is the store's trust state, read (not verified: what the
// store says is trusted is what is judged).
func storedTrust(t *testing.T, st secretstore.Store) *pki.TrustState {
	t.Helper()
	v, _ := st.Get(context.Background(), []string{names.Bundle()})
	doc, err := pki.PeekTrust([]byte(v[names.Bundle()]), names.Prefix)
	if err != nil {
		t.Fatalf("the store's trust state: %v", err)
	}
	return doc
}

// lists says whether doc lists a node-issuing CA for c's key.
func lists(doc *pki.TrustState, c *x509.Certificate) bool {
	for _, l := range doc.NodeCACerts() {
		if pki.SameKey(l, c) {
			return true
		}
	}
	return false
}

// Someone with write (not read) access puts a key of their own in
// <prefix>/node-ca-key. Status names it Broken without pointing at a
// command that would certify it; every command that (re-)issues the
// node-issuing CA under the root replaces it with a new key, says so,
// and never writes a certificate for it (not in a secret, not in a trust
// state).
func TestPlantedNodeCAKeyIsNeverCertified(t *testing.T) {
	ctx := context.Background()
	due := 7*24*time.Hour + time.Minute
	flows := []struct {
		name string
		run  func(*certs.Fleet) (string, error)
	}{
		{"node-ca", func(f *certs.Fleet) (string, error) {
			res, err := f.NodeCA(ctx)
			if err != nil {
				return "", err
			}
			return res.Step + ": " + res.Reason, nil
		}},
		{"node-ca --rekey --if-due", func(f *certs.Fleet) (string, error) {
			res, err := f.RekeyNodeCAIfDue(ctx)
			if err != nil {
				return "", err
			}
			return res.Step + ": " + res.Reason, nil
		}},
		{"node-ca --rekey --if-due, when due", func(f *certs.Fleet) (string, error) {
			f.Now = func() time.Time { return time.Now().Add(due) } // and for the status after
			res, err := f.RekeyNodeCAIfDue(ctx)
			if err != nil {
				return "", err
			}
			return res.Step + ": " + res.Reason, nil
		}},
		{"node-ca --rekey", func(f *certs.Fleet) (string, error) {
			res, err := f.RekeyNodeCA(ctx)
			if err != nil {
				return "", err
			}
			return res.Step + ": " + res.Reason, nil
		}},
		{"rotate-ca begin, promote", func(f *certs.Fleet) (string, error) {
			r := rotation{f: f}
			if _, err := r.Begin(ctx); err != nil {
				return "", err
			}
			_, err := r.Promote(ctx)
			return "promoted", err
		}},
	}
	for _, flow := range flows {
		t.Run(flow.name, func(t *testing.T) {
			st := &plantWatch{MemoryStore: storetest.NewMemoryStore(), t: t}
			o := opts(t, st)
			bootstrap(t, o)
			k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
			enc, _ := pki.EncodeKey(k)
			st.MemoryStore.Put(ctx, names.NodeCAKey(), string(enc)) // the attacker's write
			st.planted = k.Public()
			fl := &certs.Fleet{Store: st, Log: o.Log}

			rep := fl.Status(ctx, certs.StatusOptions{})
			problems := strings.Join(rep.Problems, "\n")
			if rep.Level != certs.Broken || !strings.Contains(problems, "joblet/node-ca-key holds a key that no node-issuing CA the signed trust state") ||
				!strings.Contains(problems, "`joblet certs node-ca --rekey`") || strings.Contains(problems, "keeps the key") {
				t.Fatalf("status with a planted node-issuing key: level %d\n%s", rep.Level, problems)
			}
			t.Logf("status: %s", problems)

			said, err := flow.run(fl)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(flow.name, "rotate-ca") && !strings.Contains(said, "never certified, replaced by a new key") {
				t.Errorf("the command does not say it replaced the planted key: %s", said)
			}
			t.Logf("%s: %s", flow.name, said)
			got, _ := st.Get(ctx, []string{names.NodeCAKey(), names.NodeCACert()})
			key, err := pki.ParseKey([]byte(got[names.NodeCAKey()]))
			if err != nil {
				t.Fatal(err)
			}
			cert, err := pki.ParseCert([]byte(got[names.NodeCACert()]))
			if err != nil {
				t.Fatal(err)
			}
			if pki.MatchesKey(cert, key) != nil || pki.MatchesKey(cert, k) == nil {
				t.Fatal("the node-issuing pair is apart, or is the planted key's")
			}
			if !lists(storedTrust(t, st), cert) {
				t.Fatal("the signed trust state does not list the new node-issuing CA")
			}
			if rep := fl.Status(ctx, certs.StatusOptions{}); rep.Level == certs.Broken {
				t.Fatalf("status after: %q", rep.Problems)
			}
		})
	}
}

// writeCut counts the writes and fails write failAt after it was made (an
// answer cut: the write happened, the command stops). After every write it
// lets through (armed), nodes must be able to use what the store holds
// without clients refusing it: the node-issuing certificate, when it is its
// key's, listed in the store's trust state; and a key apart from the
// certificate only when the trust state lists it (so the next run completes
// the pair and certifies no foreign key).
type writeCut struct {
	*storetest.MemoryStore
	t              *testing.T
	writes, failAt int
	armed          bool
	step           string
}

func (s *writeCut) write(name string, do func() error) error {
	s.writes++
	if err := do(); err != nil {
		return err
	}
	if s.armed {
		s.check(name)
	}
	if s.writes == s.failAt {
		return errInjected
	}
	return nil
}

func (s *writeCut) check(after string) {
	s.t.Helper()
	got, _ := s.MemoryStore.Get(context.Background(), []string{names.NodeCAKey(), names.NodeCACert()})
	key, err := pki.ParseKey([]byte(got[names.NodeCAKey()]))
	if err != nil {
		s.t.Fatalf("%s, after write %d (%s): %v", s.step, s.writes, after, err)
	}
	cert, err := pki.ParseCert([]byte(got[names.NodeCACert()]))
	if err != nil {
		s.t.Fatalf("%s, after write %d (%s): %v", s.step, s.writes, after, err)
	}
	doc := storedTrust(s.t, s.MemoryStore)
	switch {
	case pki.MatchesKey(cert, key) == nil && !lists(doc, cert):
		s.t.Fatalf("%s, after write %d (%s): nodes renew from a node-issuing CA (serial %s) that the trust state (version %d) does not list: clients holding it refuse them", s.step, s.writes, after, pki.SerialHex(cert.SerialNumber), doc.Version)
	case pki.MatchesKey(cert, key) != nil:
		listed := false
		for _, l := range doc.NodeCACerts() {
			listed = listed || pki.MatchesKey(l, key) == nil
		}
		if !listed {
			s.t.Fatalf("%s, after write %d (%s): the store's node-issuing key is apart from its certificate and not listed: the next run could not tell it from a planted one", s.step, s.writes, after)
		}
	}
}

func (s *writeCut) Create(ctx context.Context, sec secretstore.Secret) error {
	return s.write(sec.Name, func() error { return s.MemoryStore.Create(ctx, sec) })
}
func (s *writeCut) Put(ctx context.Context, name, value string) error {
	return s.write(name, func() error { return s.MemoryStore.Put(ctx, name, value) })
}
func (s *writeCut) PutPending(ctx context.Context, name, value string) error {
	return s.write(name, func() error { return s.MemoryStore.PutPending(ctx, name, value) })
}

// A re-key of the node-issuing CA (the operator's --rekey and the
// scheduled --rekey --if-due once due) stopped after each of its writes in
// turn: at no moment do nodes renew from a node-issuing CA the trust state
// does not list, and the command run again completes it (the scheduled
// run with the key the cut run wrote, when it wrote one); a node then
// renews from it, and its chain is one the store's trust state allows.
func TestNodeCARekeyAtEveryWrite(t *testing.T) {
	ctx := context.Background()
	due := 7*24*time.Hour + time.Minute
	for _, cmd := range []string{"--rekey", "--rekey --if-due"} {
		run := func(f *certs.Fleet) (*certs.NodeCAResult, error) {
			if cmd == "--rekey" {
				return f.RekeyNodeCA(ctx)
			}
			return f.RekeyNodeCAIfDue(ctx)
		}
		total := -1
		for at := 0; total < 0 || at <= total; at++ {
			st := &writeCut{MemoryStore: storetest.NewMemoryStore(), t: t}
			o := opts(t, st)
			bootstrap(t, o)
			cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
			start := time.Now()
			fl := &certs.Fleet{Store: st, Log: o.Log, Now: func() time.Time { return start.Add(due) }}
			before, _ := st.MemoryStore.Get(ctx, []string{names.NodeCAKey()})
			st.writes, st.failAt, st.armed, st.step = 0, at, true, fmt.Sprintf("node-ca %s, write %d cut", cmd, at)
			_, err := run(fl)
			if at == 0 {
				if err != nil {
					t.Fatalf("%s: %v", st.step, err)
				}
				total = st.writes
				t.Logf("node-ca %s: %d writes", cmd, total)
				continue
			}
			if !errors.Is(err, errInjected) {
				t.Fatalf("%s: %v", st.step, err)
			}
			cut, _ := st.MemoryStore.Get(ctx, []string{names.NodeCAKey()})
			st.failAt = 0
			res, err := run(fl)
			if err != nil {
				t.Fatalf("%s, run again: %v", st.step, err)
			}
			got, _ := st.MemoryStore.Get(ctx, []string{names.NodeCAKey(), names.NodeCACert()})
			if cmd != "--rekey" && cut[names.NodeCAKey()] != before[names.NodeCAKey()] && got[names.NodeCAKey()] != cut[names.NodeCAKey()] {
				t.Errorf("%s: the scheduled run again made another key (%s: %s), not completing the one written", st.step, res.Step, res.Reason)
			}
			if got[names.NodeCAKey()] == before[names.NodeCAKey()] {
				t.Fatalf("%s, run again: no new key (%s)", st.step, res.Step)
			}
			if r, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: cfgPath}); err != nil || !r.Renewed {
				t.Fatalf("%s: the node's refresh: %+v %v", st.step, r, err)
			}
			srv, _ := config.LoadServer(cfgPath)
			leaf, chain, _ := pki.ParseChain([]byte(srv.Security.ServerCert))
			nca, _ := pki.ParseCert([]byte(got[names.NodeCACert()]))
			doc := storedTrust(t, st.MemoryStore)
			if len(chain) == 0 || !chain[0].Equal(nca) || !doc.AllowsServerChain(append([]*x509.Certificate{leaf}, chain...)) || !lists(doc, nca) {
				t.Fatalf("%s: the node does not serve from the listed node-issuing CA", st.step)
			}
			if rep := fl.Status(ctx, certs.StatusOptions{}); rep.Level != certs.OK {
				t.Fatalf("%s: status after: %q", st.step, rep.Problems)
			}
		}
	}
}

// Status compares the pairs a node and an operator hold locally: this
// node's server key with its certificate, and each rnx config's key with
// its client certificate.
func TestStatusComparesLocalPairs(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	rnxPath := filepath.Join(o.Home, "config", "rnx-config.yml")
	fl := &certs.Fleet{Store: st, Log: o.Log}
	so := certs.StatusOptions{ServerConfig: cfgPath, RnxConfigs: []string{rnxPath}, WarnDays: 1}
	if rep := fl.Status(ctx, so); rep.Level != certs.OK {
		t.Fatalf("before: %q", rep.Problems)
	}
	other, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	otherPEM, _ := pki.EncodeKey(other)

	srv, _ := config.LoadServer(cfgPath)
	good := srv.Security.ServerKey
	srv.Security.ServerKey = string(otherPEM)
	writeServer(t, cfgPath, srv)
	rep := fl.Status(ctx, so)
	if rep.Level != certs.Broken || !strings.Contains(strings.Join(rep.Problems, "\n"), "security.serverKey in "+cfgPath+" is not this certificate's key") {
		t.Fatalf("a server key apart from its certificate: %d %q", rep.Level, rep.Problems)
	}
	srv.Security.ServerKey = good
	writeServer(t, cfgPath, srv)

	rc, err := config.LoadRnx(rnxPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range rc.Nodes {
		n.Key = string(otherPEM)
	}
	b, _ := rc.Marshal()
	writeFile(t, rnxPath, b)
	rep = fl.Status(ctx, so)
	if rep.Level != certs.Broken || !strings.Contains(strings.Join(rep.Problems, "\n"), "its key is not its client certificate's") {
		t.Fatalf("an rnx config's key apart from its certificate: %d %q", rep.Level, rep.Problems)
	}
}

func writeServer(t *testing.T, path string, s *config.Server) {
	t.Helper()
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// Two scheduled runs at once, once the node-issuing CA is due: they end
// with one matching pair that the store's trust state lists, whatever
// order their writes interleave in; neither certifies the other's key
// unless the trust state lists it.
func TestConcurrentScheduledRekeys(t *testing.T) {
	ctx := context.Background()
	due := 7*24*time.Hour + time.Minute
	outcomes := map[string]int{}
	defer func() { t.Logf("40 runs in 20 pairs: %v", outcomes) }()
	for round := range 20 {
		st := storetest.NewMemoryStore()
		o := opts(t, st)
		bootstrap(t, o)
		start := time.Now()
		fl := &certs.Fleet{Store: st, Log: o.Log, Now: func() time.Time { return start.Add(due) }}
		errs := make(chan error, 2)
		steps := make(chan string, 2)
		for range 2 {
			go func() {
				res, err := fl.RekeyNodeCAIfDue(ctx)
				if err == nil {
					steps <- res.Step
				}
				errs <- err
			}()
		}
		for range 2 {
			if err := <-errs; err != nil {
				if !strings.Contains(err.Error(), "another run is re-keying it at the same time") {
					t.Fatalf("round %d: %v", round, err)
				}
				outcomes["gave up"]++
			}
		}
		close(steps)
		for s := range steps {
			outcomes[s]++
		}
		got, _ := st.Get(ctx, []string{names.NodeCAKey(), names.NodeCACert()})
		key, _ := pki.ParseKey([]byte(got[names.NodeCAKey()]))
		cert, _ := pki.ParseCert([]byte(got[names.NodeCACert()]))
		if key == nil || cert == nil || pki.MatchesKey(cert, key) != nil {
			// A run that gave up leaves it to the next: which completes it.
			if _, err := fl.RekeyNodeCAIfDue(ctx); err != nil {
				t.Fatalf("round %d, the next run: %v", round, err)
			}
			got, _ = st.Get(ctx, []string{names.NodeCAKey(), names.NodeCACert()})
			key, _ = pki.ParseKey([]byte(got[names.NodeCAKey()]))
			cert, _ = pki.ParseCert([]byte(got[names.NodeCACert()]))
		}
		if pki.MatchesKey(cert, key) != nil || !lists(storedTrust(t, st), cert) {
			t.Fatalf("round %d: the pair is apart, or not listed", round)
		}
		if rep := fl.Status(ctx, certs.StatusOptions{}); rep.Level != certs.OK {
			t.Fatalf("round %d: status: %q", round, rep.Problems)
		}
	}
}

// staleSigner plays another writer of the trust state (a revoke, `certs
// trust sign`) that read it before a re-key listed its new node-issuing CA
// and writes after the re-key wrote its certificate: a newer version,
// signed by the root, listing what it read.
type staleSigner struct {
	*storetest.MemoryStore
	t     *testing.T
	stale *pki.TrustState // what the other writer read; nil: disarmed
}

func (s *staleSigner) Put(ctx context.Context, name, value string) error {
	if err := s.MemoryStore.Put(ctx, name, value); err != nil || name != names.NodeCACert() || s.stale == nil {
		return err
	}
	v, _ := s.MemoryStore.Get(ctx, []string{names.CACert(), names.CAKey(), names.Bundle()})
	cur, _ := pki.PeekTrust([]byte(v[names.Bundle()]), names.Prefix)
	ca, _ := pki.ParseCert([]byte(v[names.CACert()]))
	key, _ := pki.ParseKey([]byte(v[names.CAKey()]))
	next := pki.NewTrustState(names.Prefix, cur.Version+1, s.stale.RootCerts(), s.stale.LineageCerts(), s.stale.MinCRL, time.Now()).WithNodeCAs(s.stale.NodeCACerts()...)
	data, err := pki.SignTrust(ctx, next, &pki.CA{Cert: ca, Key: key})
	if err != nil {
		s.t.Fatal(err)
	}
	s.stale = nil
	return s.MemoryStore.Put(ctx, names.Bundle(), string(data))
}

// A trust state written by another step between a re-key's listing and
// its read-back (from what that step read before) drops the new
// node-issuing CA: the re-key lists it again, so nodes never renew from
// one the store's state does not list.
func TestRekeyListsItsCAAgainAfterAStaleTrustWrite(t *testing.T) {
	ctx := context.Background()
	st := &staleSigner{MemoryStore: storetest.NewMemoryStore(), t: t}
	o := opts(t, st)
	bootstrap(t, o)
	st.stale = storedTrust(t, st.MemoryStore)
	res, err := (&certs.Fleet{Store: st, Log: o.Log}).RekeyNodeCA(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.stale != nil {
		t.Fatal("the other writer never wrote")
	}
	got, _ := st.Get(ctx, []string{names.NodeCACert()})
	cert, _ := pki.ParseCert([]byte(got[names.NodeCACert()]))
	if doc := storedTrust(t, st.MemoryStore); !lists(doc, cert) || pki.SerialHex(cert.SerialNumber) != res.NodeCA.Serial {
		t.Fatalf("the store's trust state (version %d) does not list the re-keyed node-issuing CA", doc.Version)
	}
}

// During a rotation, status compares the pending CA with the key a begin
// wrote for it (here the pending ca-key; in KMS mode the KMS key's public
// half): another key there is Broken, naming the fix.
func TestStatusComparesThePendingCAWithItsKey(t *testing.T) {
	ctx := context.Background()
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	bootstrap(t, o)
	fl := &certs.Fleet{Store: st, Log: o.Log}
	if _, err := (rotation{f: fl}).Begin(ctx); err != nil {
		t.Fatal(err)
	}
	if rep := fl.Status(ctx, certs.StatusOptions{}); rep.Level == certs.Broken {
		t.Fatalf("a begun rotation: %q", rep.Problems)
	}
	other, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	enc, _ := pki.EncodeKey(other)
	if err := st.PutPending(ctx, names.CAKey(), string(enc)); err != nil {
		t.Fatal(err)
	}
	rep := fl.Status(ctx, certs.StatusOptions{})
	if rep.Level != certs.Broken || !strings.Contains(strings.Join(rep.Problems, "\n"), "the pending version of joblet/ca-cert (a rotation's new CA, sha256") {
		t.Fatalf("a pending CA apart from its key: %d %q", rep.Level, rep.Problems)
	}

	// A move to a KMS key, then to another: no phase reads as broken.
	st2 := storetest.NewMemoryStore()
	o2 := opts(t, st2)
	bootstrap(t, o2)
	open := kmsOpener(t, "arn:k1", "arn:k2")
	kf := &certs.Fleet{Store: st2, Log: o2.Log, OpenKMS: open}
	for _, step := range []struct{ name, key string }{{"begin", "arn:k1"}, {"promote", ""}, {"finish", ""}, {"begin", "arn:k2"}, {"promote", ""}, {"abort", ""}, {"abort", ""}} {
		r := rotation{f: kf, kmsKey: step.key}
		do := map[string]func(context.Context) (*certs.RotationStatus, error){"begin": r.Begin, "promote": r.Promote, "finish": r.Finish, "abort": r.Abort}[step.name]
		if _, err := do(ctx); err != nil {
			t.Fatalf("%s %s: %v", step.name, step.key, err)
		}
		if rep := kf.Status(ctx, certs.StatusOptions{}); rep.Level == certs.Broken {
			t.Fatalf("after %s %s: %q", step.name, step.key, rep.Problems)
		}
	}
}
