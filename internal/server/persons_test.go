package server_test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

// A node holds persons' certificates (`rnx login`) to the root-signed
// identity policy it holds, whatever the user-issuing CA signed: a
// compromised issuer cannot mint admin for someone the policy does not
// name, nor for someone it names as a developer. Shared role certificates
// stay, except for the roles the policy refuses them for; a node without a
// policy accepts no person.
func TestNodeHoldsPersonsToTheIdentityPolicy(t *testing.T) {
	st := storetest.NewMemoryStore()
	first := startNode(t, st)
	u := newUserCA(t, st)
	withPolicy := startNode(t, st, u.policy(t, idpolicy.Policy{
		Rules:        []idpolicy.Rule{{User: "arn:aws:iam::111122223333:user/alice", Grant: pki.Developer}},
		RefuseShared: []pki.Role{pki.Admin}}))
	person := func(f *fleet, arn string, role pki.Role) *config.Node {
		return u.person(t, f.rnx.Nodes["default"], arn, role)
	}
	shared := func(f *fleet, role pki.Role) *config.Node {
		for _, n := range f.rnx.Nodes {
			if c, err := pki.ParseLeaf([]byte(n.Cert)); err == nil {
				if r, _ := pki.RoleOf(c); r == role {
					return n
				}
			}
		}
		t.Fatalf("no %s entry", role)
		return nil
	}
	for _, c := range []struct {
		what string
		f    *fleet
		node func(*fleet) *config.Node
		ok   bool
		says string
	}{
		{"alice as developer", withPolicy, func(f *fleet) *config.Node { return person(f, "arn:aws:iam::111122223333:user/alice", pki.Developer) }, true, ""},
		{"alice as admin (the issuer signed more than the policy gives)", withPolicy, func(f *fleet) *config.Node { return person(f, "arn:aws:iam::111122223333:user/alice", pki.Admin) }, false, "gives arn:aws:iam::111122223333:user/alice the role developer"},
		{"mallory, whom no rule names", withPolicy, func(f *fleet) *config.Node { return person(f, "arn:aws:iam::111122223333:user/mallory", pki.Reader) }, false, "no rule"},
		{"the shared admin certificate", withPolicy, func(f *fleet) *config.Node { return shared(f, pki.Admin) }, false, "refuses shared admin"},
		{"the shared reader certificate", withPolicy, func(f *fleet) *config.Node { return shared(f, pki.Reader) }, true, ""},
		{"alice at a node without a policy", first, func(f *fleet) *config.Node { return person(f, "arn:aws:iam::111122223333:user/alice", pki.Developer) }, false, "holds no identity policy"},
		{"the shared admin at a node without a policy", first, func(f *fleet) *config.Node { return shared(f, pki.Admin) }, true, ""},
	} {
		_, err := dial(t, "x", c.node(c.f)).Info(ctx(t))
		if (err == nil) != c.ok || (err != nil && !strings.Contains(err.Error(), c.says)) {
			t.Errorf("%s: %v, want ok=%v naming %q", c.what, err, c.ok, c.says)
		}
	}
}

// userCA is a user-issuing CA under the root of the fleet in a store, as
// the issuer holds it (`rnx login`), and the root to sign identity
// policies with.
type userCA struct {
	root, ca *pki.CA
}

func newUserCA(t testing.TB, st *storetest.MemoryStore) *userCA {
	t.Helper()
	vals, err := st.Get(context.Background(), []string{"joblet/ca-cert", "joblet/ca-key"})
	if err != nil {
		t.Fatal(err)
	}
	rootCert, _ := pki.ParseCert([]byte(vals["joblet/ca-cert"]))
	rootKey, err := pki.ParseKey([]byte(vals["joblet/ca-key"]))
	if err != nil {
		t.Fatal(err)
	}
	root := &pki.CA{Cert: rootCert, Key: rootKey}
	ukey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	uca, err := root.IssueUserCA(ukey.Public(), time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &userCA{root: root, ca: &pki.CA{Cert: uca.Cert, Key: ukey}}
}

// policy is a config change giving a node pol (fleet, version and times
// filled in), signed by the root.
func (u *userCA) policy(t testing.TB, pol idpolicy.Policy) func(*config.Server) {
	t.Helper()
	now := time.Now()
	pol.Fleet, pol.Version, pol.Issued, pol.Expires = "joblet", 1, now, now.Add(time.Hour)
	signed, err := idpolicy.Sign(context.Background(), &pol, u.root)
	if err != nil {
		t.Fatal(err)
	}
	return func(c *config.Server) { c.Security.IdentityPolicy = string(signed) }
}

// person is base (a node entry of an rnx config) with a person's
// certificate for arn and role, and its key.
func (u *userCA) person(t testing.TB, base *config.Node, arn string, role pki.Role) *config.Node {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := u.ca.IssuePerson(key.Public(), pki.Person{ARN: arn, Role: role}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	n := *base
	n.Cert, n.Key = string(pki.EncodeCert(is.Cert))+string(pki.EncodeCert(u.ca.Cert)), string(keyPEM)
	return &n
}

// A trust state a client carries to the node (carrytrust) keeps the
// identity policy the node holds, unless the state names a newer one: the
// node then holds none until its refresh brings it. (The node used to drop
// its policy on every carried state, refusing every person until its next
// refresh.)
func TestCarriedTrustKeepsTheIdentityPolicy(t *testing.T) {
	st := storetest.NewMemoryStore()
	startNode(t, st)
	u := newUserCA(t, st)
	f := startNode(t, st, u.policy(t, idpolicy.Policy{Rules: []idpolicy.Rule{{User: "arn:aws:iam::111122223333:user/alice", Grant: pki.Developer}}}))
	held, err := pki.PeekTrust([]byte(f.srv.Security.TrustState), "")
	if err != nil {
		t.Fatal(err)
	}
	carry := func(version, minPolicy uint64) error {
		t.Helper()
		next := pki.NewTrustState(held.Fleet, version, held.RootCerts(), held.LineageCerts(), held.MinCRL, time.Now()).WithNodeCAs(held.NodeCACerts()...)
		next.MinIdentityPolicy = minPolicy
		data, err := pki.SignTrust(context.Background(), next, u.root)
		if err != nil {
			t.Fatal(err)
		}
		alice := u.person(t, f.rnx.Nodes["default"], "arn:aws:iam::111122223333:user/alice", pki.Developer)
		alice.Trust = string(data)
		c, err := client.DialLearning("default", alice, func([]byte, [][]*x509.Certificate) error { return nil })
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var last error
		for range 3 {
			_, last = c.Info(ctx(t))
		}
		return last
	}
	if err := carry(held.Version+1, 1); err != nil {
		t.Errorf("alice after carrying a newer trust state that names her policy: %v", err)
	}
	if err := carry(held.Version+2, 2); err == nil || !strings.Contains(err.Error(), "holds no identity policy") {
		t.Errorf("alice after carrying a trust state that names a newer policy than the node holds: %v", err)
	}
}
