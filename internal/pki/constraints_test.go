package pki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
)

// A node-issuing CA carries the fleet's names as critical name
// constraints: what it signs inside them verifies, in Go and in openssl;
// a server certificate for any other name, signed with its key as a thief
// of it would, is refused by both, and IssueServer refuses to make one.
func TestNodeCANameConstraints(t *testing.T) {
	now := time.Now()
	root := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	lb, err := pki.ParseNameConstraints([]string{"lb.example.net"})
	if err != nil {
		t.Fatal(err)
	}
	nk, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := root.IssueNodeCA(nk.Public(), now, pki.DefaultNodeCALifetime, pki.DefaultNodeConstraints().Union(lb))
	if err != nil {
		t.Fatal(err)
	}
	nodeCA := &pki.CA{Cert: is.Cert, Key: nk}
	if !is.Cert.PermittedDNSDomainsCritical {
		t.Fatal("the name constraints are not critical")
	}
	text := openssl.Text(t, pki.EncodeCert(nodeCA.Cert))
	for _, want := range []string{"X509v3 Name Constraints: critical", "DNS:.internal", "IP:10.0.0.0/255.0.0.0", "IP:FC00:0:0:0:0:0:0:0/FE00:0:0:0:0:0:0:0", "DNS:lb.example.net"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl does not show %q in the node-issuing CA:\n%s", want, text)
		}
	}
	rootPEM := pki.EncodeCert(root.Cert)
	got, ok := pki.NodeConstraintsOf(nodeCA.Cert)
	if !ok || !got.Covers(pki.DefaultNodeConstraints().Union(lb)) {
		t.Fatalf("constraints read back: %v", got.Strings())
	}

	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	inside := []string{"localhost", "joblet", "node-1.joblet", "ip-10-0-1-5.ec2.internal", "*.svc.internal", "lb.example.net", "a.lb.example.net",
		"10.1.2.3", "172.31.255.1", "192.168.1.1", "127.0.0.1", "::1", "fd00::5"}
	sans, err := pki.ParseSANs(inside)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := nodeCA.IssueServer(k.Public(), sans, now, pki.DefaultFleetServerLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyChain(srv.Cert, root.Cert, x509.ExtKeyUsageServerAuth, nodeCA.Cert); err != nil {
		t.Fatalf("Go refuses names inside the constraints: %v", err)
	}
	openssl.Verify(t, rootPEM, pki.EncodeCerts(srv.Cert, nodeCA.Cert), "sslserver")

	forged := map[string]*x509.Certificate{}
	forge := func(what string, tmpl *x509.Certificate) {
		tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = big.NewInt(int64(len(forged)+100)), now.Add(-time.Minute), now.Add(time.Hour)
		tmpl.ExtKeyUsage, tmpl.KeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, x509.KeyUsageDigitalSignature
		if tmpl.Subject.CommonName == "" {
			tmpl.Subject = pkix.Name{CommonName: "joblet-server"}
		}
		forged[what] = sign(t, tmpl, nodeCA, k)
	}
	for _, name := range []string{"www.example.com", "*.com", "example.net", "internal", "8.8.8.8", "2001:db8::1", "11.0.0.1"} {
		s, err := pki.ParseSANs([]string{"localhost", name})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nodeCA.IssueServer(k.Public(), s, now, time.Hour); !errors.Is(err, pki.ErrNameNotPermitted) || !strings.Contains(err.Error(), name) {
			t.Errorf("IssueServer for %s: %v", name, err)
		}
		forge(name, &x509.Certificate{DNSNames: s.DNS, IPAddresses: s.IPs})
	}
	// Kinds of names a server certificate never carries are bounded too.
	u, _ := url.Parse("https://www.example.com/")
	forge("URI SAN", &x509.Certificate{DNSNames: []string{"localhost"}, URIs: []*url.URL{u}})
	forge("email SAN", &x509.Certificate{DNSNames: []string{"localhost"}, EmailAddresses: []string{"admin@example.com"}})
	for what, c := range forged {
		if err := verifyChain(c, root.Cert, x509.ExtKeyUsageServerAuth, nodeCA.Cert); err == nil {
			t.Errorf("Go accepts a server certificate for %s from the node-issuing CA", what)
		}
		out := openssl.VerifyFails(t, rootPEM, pki.EncodeCerts(c, nodeCA.Cert), "sslserver")
		t.Logf("%s: openssl says %s", what, firstLine(out, "error"))
	}
	// No SAN at all, a public name in the CN: Go never reads the CN for a
	// host name; openssl checks it against the DNS constraints.
	forge("CN only", &x509.Certificate{Subject: pkix.Name{CommonName: "www.example.com"}})
	openssl.VerifyFails(t, rootPEM, pki.EncodeCerts(forged["CN only"], nodeCA.Cert), "sslserver")
}

func TestParseNameConstraints(t *testing.T) {
	nc, err := pki.ParseNameConstraints([]string{" LB.Example.NET. ", "*.nodes.example.org", ".corp", "203.0.113.7", "198.51.100.0/24", "2001:db8::/32"})
	if err != nil {
		t.Fatal(err)
	}
	want := "lb.example.net .nodes.example.org .corp 203.0.113.7/32 198.51.100.0/24 2001:db8::/32"
	if got := strings.Join(nc.Strings(), " "); got != want {
		t.Fatalf("parsed %q, want %q", got, want)
	}
	for _, bad := range []string{"", "*", ".", "0.0.0.0/0", "::/0", "a b", "10.0.0.0/33", "lb.example.net:443", "*.*.x"} {
		if _, err := pki.ParseNameConstraints([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	def := pki.DefaultNodeConstraints()
	for _, covered := range [][]string{{"a.internal"}, {".b.internal"}, {"10.9.0.0/16"}, {"127.0.0.1"}, {"x.joblet"}, {"::1"}} {
		c, _ := pki.ParseNameConstraints(covered)
		if !def.Covers(c) {
			t.Errorf("the defaults do not cover %v", covered)
		}
	}
	for _, not := range [][]string{{"internal"}, {"lb.example.net"}, {"10.0.0.0/7"}, {"8.8.8.8"}, {"::2"}} {
		c, _ := pki.ParseNameConstraints(not)
		if def.Covers(c) {
			t.Errorf("the defaults cover %v", not)
		}
		if u := def.Union(c); !u.Covers(c) || len(u.Strings()) != len(def.Strings())+1 {
			t.Errorf("union with %v: %v", not, u.Strings())
		}
	}
	if u := def.Union(def); len(u.Strings()) != len(def.Strings()) {
		t.Errorf("union with itself grew: %v", u.Strings())
	}
}

// The node-issuing CA is due for a new key half-way through its life, or
// at once when it lives longer than a node-issuing CA may.
func TestNodeCADue(t *testing.T) {
	now := time.Now()
	root := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, _ := root.IssueNodeCA(k.Public(), now, pki.DefaultNodeCALifetime, pki.DefaultNodeConstraints())
	for at, want := range map[time.Duration]bool{0: false, 6 * 24 * time.Hour: false, 7*24*time.Hour + time.Minute: true, 15 * 24 * time.Hour: true} {
		if due, why := pki.NodeCADue(is.Cert, now.Add(at)); due != want {
			t.Errorf("at +%v: due %v (%s), want %v", at, due, why, want)
		}
	}
	for _, l := range []time.Duration{40 * time.Second, 99 * time.Minute, 100 * time.Minute, pki.DefaultNodeCALifetime} {
		c, _ := root.IssueNodeCA(k.Public(), now, l, pki.DefaultNodeConstraints())
		if got := pki.LifetimeOf(c.Cert); got != l {
			t.Errorf("LifetimeOf a node-issuing CA issued for %v: %v", l, got)
		}
	}
	long, _ := root.IssueNodeCA(k.Public(), now, pki.DefaultCALifetime, pki.DefaultNodeConstraints())
	if due, why := pki.NodeCADue(long.Cert, now); !due || !strings.Contains(why, "longer than") {
		t.Errorf("a node-issuing CA living years: due %v (%s)", due, why)
	}
}

// A re-issue for the same key keeps the validity window, so a widening
// does not move when the key is due; an expired one is refused.
func TestReissueNodeCAKeepsItsWindow(t *testing.T) {
	now := time.Now()
	root := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, _ := root.IssueNodeCA(k.Public(), now, pki.DefaultNodeCALifetime, pki.DefaultNodeConstraints())
	wider, _ := pki.ParseNameConstraints([]string{"lb.example.net"})
	re, err := root.ReissueNodeCA(is.Cert, now.Add(3*24*time.Hour), pki.DefaultNodeConstraints().Union(wider))
	if err != nil {
		t.Fatal(err)
	}
	if !re.Cert.NotBefore.Equal(is.Cert.NotBefore) || !re.Cert.NotAfter.Equal(is.Cert.NotAfter) || pki.MatchesKey(re.Cert, k) != nil || !pki.NodeCADueAt(re.Cert).Equal(pki.NodeCADueAt(is.Cert)) {
		t.Fatalf("re-issued: %v to %v, want %v to %v", re.Cert.NotBefore, re.Cert.NotAfter, is.Cert.NotBefore, is.Cert.NotAfter)
	}
	if err := pki.CheckNodeCA(re.Cert, root.Cert, now); err != nil {
		t.Fatal(err)
	}
	if _, err := root.ReissueNodeCA(is.Cert, is.Cert.NotAfter, pki.DefaultNodeConstraints()); err == nil {
		t.Fatal("an expired node-issuing CA was re-issued for its key")
	}
}

// A client's trust state allows a chain through a node-issuing CA it
// lists, or one the root issued after the state was signed (the next
// scheduled re-key: no client change); one issued before it and not
// listed (a replaced key the state dropped) is refused. Even a state
// signed a minute before the re-key (inside the backdate) allows it.
func TestTrustStateAllowsANewerNodeCA(t *testing.T) {
	now := time.Now().Truncate(time.Second)
	root := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	key := func() *pki.CA {
		k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		return &pki.CA{Key: k}
	}
	old, cur, next := key(), key(), key()
	is, _ := root.IssueNodeCA(old.Key.Public(), now.Add(-10*24*time.Hour), pki.DefaultNodeCALifetime, pki.DefaultNodeConstraints())
	old.Cert = is.Cert
	is, _ = root.IssueNodeCA(cur.Key.Public(), now.Add(-3*24*time.Hour), pki.DefaultNodeCALifetime, pki.DefaultNodeConstraints())
	cur.Cert = is.Cert
	state := pki.NewTrustState("joblet", 1, []*x509.Certificate{root.Cert}, []*x509.Certificate{root.Cert}, nil, now).WithNodeCAs(cur.Cert)
	is, _ = root.IssueNodeCA(next.Key.Public(), now.Add(time.Minute), pki.DefaultNodeCALifetime, pki.DefaultNodeConstraints())
	next.Cert = is.Cert
	leaf := &x509.Certificate{Raw: []byte("leaf")}
	for what, c := range map[string]struct {
		ca   *x509.Certificate
		want bool
	}{"listed": {cur.Cert, true}, "issued after the state": {next.Cert, true}, "issued before and dropped": {old.Cert, false}} {
		if got := state.AllowsServerChain([]*x509.Certificate{leaf, c.ca, root.Cert}); got != c.want {
			t.Errorf("%s: allowed %v", what, got)
		}
	}
	if at := pki.IssuedAt(next.Cert); !at.Equal(now.Add(time.Minute)) {
		t.Errorf("IssuedAt %v, want %v", at, now.Add(time.Minute))
	}
}
