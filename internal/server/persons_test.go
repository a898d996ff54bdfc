package server_test

import (
	"context"
	"strings"
	"testing"
	"time"

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
	vals, _ := st.Get(context.Background(), []string{"joblet/ca-cert", "joblet/ca-key"})
	rootCert, _ := pki.ParseCert([]byte(vals["joblet/ca-cert"]))
	rootKey, _ := pki.ParseKey([]byte(vals["joblet/ca-key"]))
	root := &pki.CA{Cert: rootCert, Key: rootKey}
	now := time.Now()
	pol, err := idpolicy.Sign(context.Background(), &idpolicy.Policy{Fleet: "joblet", Version: 1, Issued: now, Expires: now.Add(time.Hour),
		Rules:        []idpolicy.Rule{{User: "arn:aws:iam::111122223333:user/alice", Grant: pki.Developer}},
		RefuseShared: []pki.Role{pki.Admin}}, root)
	if err != nil {
		t.Fatal(err)
	}
	withPolicy := startNode(t, st, func(c *config.Server) { c.Security.IdentityPolicy = string(pol) })
	ukey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	uca, err := root.IssueUserCA(ukey.Public(), now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	userCA := &pki.CA{Cert: uca.Cert, Key: ukey}
	person := func(f *fleet, arn string, role pki.Role) *config.Node {
		t.Helper()
		key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		is, err := userCA.IssuePerson(key.Public(), pki.Person{ARN: arn, Role: role}, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodeKey(key)
		n := *f.rnx.Nodes["default"]
		n.Cert, n.Key = string(pki.EncodeCert(is.Cert))+string(pki.EncodeCert(uca.Cert)), string(keyPEM)
		return &n
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
