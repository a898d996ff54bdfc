package pki_test

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
)

// verifyChain is Go's verifier on leaf with intermediates, for usage.
func verifyChain(leaf *x509.Certificate, root *x509.Certificate, usage x509.ExtKeyUsage, inter ...*x509.Certificate) error {
	roots, ints := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root)
	for _, c := range inter {
		ints.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: ints, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// The node-issuing CA signs server certificates that Go and openssl accept
// under the root, and nothing it signs is accepted as a client: not a
// forged OU=admin client certificate, not one that claims every usage, not
// a CA under it that would sign one.
func TestNodeCACannotIssueClients(t *testing.T) {
	now := time.Now()
	root := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	nodeKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := root.IssueNodeCA(nodeKey.Public(), now, pki.DefaultNodeCALifetime, pki.DefaultNodeConstraints())
	if err != nil {
		t.Fatal(err)
	}
	nodeCA := &pki.CA{Cert: is.Cert, Key: nodeKey}
	if err := pki.CheckNodeCA(nodeCA.Cert, root.Cert, now); err != nil {
		t.Fatal(err)
	}
	rootPEM := pki.EncodeCert(root.Cert)
	text := openssl.Text(t, pki.EncodeCert(nodeCA.Cert))
	for _, want := range []string{"CA:TRUE, pathlen:0", "TLS Web Server Authentication", "Digital Signature, Certificate Sign"} {
		if !strings.Contains(text, want) {
			t.Errorf("openssl does not show %q in the node-issuing CA:\n%s", want, text)
		}
	}
	if strings.Contains(text, "CRL Sign") || strings.Contains(text, "TLS Web Client Authentication") {
		t.Errorf("the node-issuing CA may sign CRLs or authenticate clients:\n%s", text)
	}

	// A server certificate: accepted by both verifiers through the chain.
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	sans, _ := pki.ParseSANs([]string{"localhost", "127.0.0.1"})
	srv, err := nodeCA.IssueServer(k.Public(), sans, now, pki.DefaultFleetServerLifetime)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyChain(srv.Cert, root.Cert, x509.ExtKeyUsageServerAuth, nodeCA.Cert); err != nil {
		t.Fatalf("Go refuses a server certificate from the node-issuing CA: %v", err)
	}
	openssl.Verify(t, rootPEM, pki.EncodeCerts(srv.Cert, nodeCA.Cert), "sslserver")

	// What a stolen node-issuing key could sign, as an attacker would try.
	forged := map[string]*x509.Certificate{}
	adm, err := nodeCA.IssueClient(k.Public(), pki.Admin, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	forged["OU=admin client certificate"] = adm.Cert
	anyUsage := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{OrganizationalUnit: []string{"admin"}, CommonName: "admin-client"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageAny, x509.ExtKeyUsageClientAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	forged["certificate claiming any usage"] = sign(t, anyUsage, nodeCA, k)
	for what, c := range forged {
		if err := verifyChain(c, root.Cert, x509.ExtKeyUsageClientAuth, nodeCA.Cert); err == nil {
			t.Errorf("Go accepts a %s signed by the node-issuing CA as a client", what)
		}
		out := openssl.VerifyFails(t, rootPEM, pki.EncodeCerts(c, nodeCA.Cert), "sslclient")
		t.Logf("%s: openssl says %s", what, firstLine(out, "error"))
	}
	// A CA under the node-issuing CA (to escape its usage limit) is
	// refused for its path length before anything else.
	subKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	sub := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: pkix.Name{CommonName: "sub"}, NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, MaxPathLen: -1, KeyUsage: x509.KeyUsageCertSign}
	subCA := &pki.CA{Cert: sign(t, sub, nodeCA, subKey), Key: subKey}
	leaf, err := subCA.IssueClient(k.Public(), pki.Admin, now, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyChain(leaf.Cert, root.Cert, x509.ExtKeyUsageClientAuth, nodeCA.Cert, subCA.Cert); err == nil {
		t.Error("Go accepts a client certificate from a CA under the node-issuing CA")
	}
	openssl.VerifyFails(t, rootPEM, pki.EncodeCerts(leaf.Cert, subCA.Cert, nodeCA.Cert), "sslclient")
}

// CheckNodeCA refuses a node-issuing CA without its limits: a stored one
// that could sign clients is not used.
func TestCheckNodeCARefusesUnconstrained(t *testing.T) {
	now := time.Now()
	root := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	other := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	for name, tmpl := range map[string]*x509.Certificate{
		"no usage limit": {IsCA: true, MaxPathLen: 0, MaxPathLenZero: true},
		"client usage":   {IsCA: true, MaxPathLen: 0, MaxPathLenZero: true, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
		"no pathlen":     {IsCA: true, MaxPathLen: -1, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}},
	} {
		tmpl.SerialNumber, tmpl.Subject = big.NewInt(9), pkix.Name{CommonName: name}
		tmpl.NotBefore, tmpl.NotAfter, tmpl.BasicConstraintsValid, tmpl.KeyUsage = now.Add(-time.Minute), now.Add(time.Hour), true, x509.KeyUsageCertSign
		if err := pki.CheckNodeCA(sign(t, tmpl, root, k), root.Cert, now); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	is, _ := other.IssueNodeCA(k.Public(), now, time.Hour, pki.DefaultNodeConstraints())
	if err := pki.CheckNodeCA(is.Cert, root.Cert, now); err == nil {
		t.Error("a node-issuing CA of another root: accepted")
	}
}

// A root made with pathlen 0 (before node-issuing CAs) refuses any chain
// through a CA under it, in Go and in openssl: that is why `certs node-ca`
// re-issues it first. The re-issued root is the same CA: what the old one
// signed verifies under it, and chains through the node-issuing CA do.
func TestReissuedRootAllowsNodeCA(t *testing.T) {
	now := time.Now()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	oldTmpl := &x509.Certificate{SerialNumber: big.NewInt(10), Subject: pkix.Name{Organization: []string{"Joblet"}, OrganizationalUnit: []string{"CA"}, CommonName: "Joblet-CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true, MaxPathLen: 0, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, SubjectKeyId: []byte{1, 2, 3, 4}}
	der, err := x509.CreateCertificate(nil, oldTmpl, oldTmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := x509.ParseCertificate(der)
	oldCA := &pki.CA{Cert: old, Key: key}
	if pki.AllowsIntermediates(old) {
		t.Fatal("a pathlen 0 root allows intermediates")
	}
	ck, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	client, _ := oldCA.IssueClient(ck.Public(), pki.Reader, now, time.Hour)
	nk, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	nodeIs, _ := oldCA.IssueNodeCA(nk.Public(), now, time.Hour, pki.DefaultNodeConstraints())
	nodeCA := &pki.CA{Cert: nodeIs.Cert, Key: nk}
	sans, _ := pki.ParseSANs([]string{"localhost"})
	srv, _ := nodeCA.IssueServer(ck.Public(), sans, now, time.Hour)
	if err := verifyChain(srv.Cert, old, x509.ExtKeyUsageServerAuth, nodeCA.Cert); err == nil {
		t.Error("Go accepts a chain through a CA under a pathlen 0 root")
	}
	openssl.VerifyFails(t, pki.EncodeCert(old), pki.EncodeCerts(srv.Cert, nodeCA.Cert), "sslserver")

	re, err := pki.ReissueCA(old, key)
	if err != nil {
		t.Fatal(err)
	}
	if !pki.AllowsIntermediates(re) || re.Subject.String() != old.Subject.String() || !re.NotAfter.Equal(old.NotAfter) {
		t.Fatalf("re-issued root: pathlen ok %v, subject %q, notAfter %v", pki.AllowsIntermediates(re), re.Subject, re.NotAfter)
	}
	if err := verifyChain(srv.Cert, re, x509.ExtKeyUsageServerAuth, nodeCA.Cert); err != nil {
		t.Errorf("Go refuses the chain under the re-issued root: %v", err)
	}
	openssl.Verify(t, pki.EncodeCert(re), pki.EncodeCerts(srv.Cert, nodeCA.Cert), "sslserver")
	openssl.Verify(t, pki.EncodeCert(re), pki.EncodeCert(client.Cert), "sslclient")
	if err := pki.VerifyLeaf(client.Cert, []*x509.Certificate{re}, x509.ExtKeyUsageClientAuth, now); err != nil {
		t.Errorf("a client certificate of the old root does not verify under the re-issued one: %v", err)
	}
	other, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	if _, err := pki.ReissueCA(old, other); err == nil {
		t.Error("re-issued a root with another key")
	}
}

func sign(t *testing.T, tmpl *x509.Certificate, ca *pki.CA, pubOf crypto.Signer) *x509.Certificate {
	t.Helper()
	tmpl.AuthorityKeyId = ca.Cert.SubjectKeyId
	der, err := x509.CreateCertificate(nil, tmpl, ca.Cert, pubOf.Public(), ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func firstLine(out, containing string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, containing) {
			return strings.TrimSpace(l)
		}
	}
	return strings.TrimSpace(out)
}

// A revoked intermediate refuses every chain through it; the anchor is
// not checked against its own CRL.
func TestCheckChainsNotRevoked(t *testing.T) {
	now := time.Now()
	root := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	nk, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, _ := root.IssueNodeCA(nk.Public(), now, time.Hour, pki.DefaultNodeConstraints())
	nodeCA := &pki.CA{Cert: is.Cert, Key: nk}
	sans, _ := pki.ParseSANs([]string{"localhost"})
	leaf, _ := nodeCA.IssueServer(nk.Public(), sans, now, time.Hour)
	chain := [][]*x509.Certificate{{leaf.Cert, nodeCA.Cert, root.Cert}}
	for what, c := range map[string]*x509.Certificate{"leaf": leaf.Cert, "node-issuing CA": nodeCA.Cert} {
		if err := pki.CheckChainsNotRevoked(chain, map[string]bool{c.SerialNumber.Text(16): true}); err == nil {
			t.Errorf("a revoked %s passed", what)
		}
	}
	if err := pki.CheckChainsNotRevoked(chain, map[string]bool{root.Cert.SerialNumber.Text(16): true}); err != nil {
		t.Errorf("the anchor was checked: %v", err)
	}
}
