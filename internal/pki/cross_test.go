package pki_test

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
)

// goVerify verifies chain[0] against roots with chain[1:] as
// intermediates, as a stock Go TLS peer does.
func goVerify(chain []*x509.Certificate, usage x509.ExtKeyUsage, roots ...*x509.Certificate) error {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range chain[1:] {
		ip.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{usage}})
	return err
}

// A new CA cross-signed by the old one bridges: a leaf of the new CA with
// the cross certificate verifies against the old CA alone, the new CA
// alone and both, in Go and in openssl; with intermediates of any number
// under the new CA too.
func TestCrossSignBridgesOldTrust(t *testing.T) {
	old, next := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime), newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	if old.Cert.Subject.String() == next.Cert.Subject.String() {
		t.Fatal("two CAs share a name")
	}
	cross, err := pki.CrossSign(next.Cert, old, now)
	if err != nil {
		t.Fatal(err)
	}
	if !pki.IsCrossOf(cross, next.Cert, old.Cert) || pki.IsCrossOf(cross, old.Cert, next.Cert) {
		t.Fatal("IsCrossOf")
	}
	if cross.NotAfter.After(old.Cert.NotAfter) {
		t.Error("the cross certificate outlives its issuer")
	}
	// Intermediates: none (a client certificate, a server today), one (a
	// node-issuing CA under the root).
	for n := 0; n <= 2; n++ {
		issuer := next
		var inter []*x509.Certificate
		for i := 0; i < n; i++ {
			sub := intermediate(t, issuer, i == n-1)
			inter = append([]*x509.Certificate{sub.Cert}, inter...)
			issuer = sub
		}
		key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		srv, err := issuer.IssueServer(key.Public(), pki.SANs{DNS: []string{"localhost"}}, now, pki.DefaultServerLifetime)
		if err != nil {
			t.Fatal(err)
		}
		chain, ok := pki.BridgeChain(srv.Cert, inter, cross, old.Cert)
		if !ok || len(chain) != n+2 {
			t.Fatalf("%d intermediates: bridge %v, chain of %d", n, ok, len(chain))
		}
		for name, roots := range map[string][]*x509.Certificate{"old": {old.Cert}, "new": {next.Cert}, "both": {old.Cert, next.Cert}} {
			if err := goVerify(chain, x509.ExtKeyUsageServerAuth, roots...); err != nil {
				t.Errorf("%d intermediates, trusting %s: Go: %v", n, name, err)
			}
			openssl.Verify(t, pki.EncodeCerts(roots...), pki.EncodeCerts(chain...), "sslserver")
		}
		// Without the bridge an old trust refuses it: the cross is what works.
		if err := goVerify(chain[:len(chain)-1], x509.ExtKeyUsageServerAuth, old.Cert); err == nil {
			t.Error("a new-CA chain verified against the old CA without the cross certificate")
		}
	}
	// A client certificate the same way.
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	cl, _ := next.IssueClient(key.Public(), pki.Reader, now, pki.DefaultClientLifetime)
	chain, ok := pki.BridgeChain(cl.Cert, nil, cross, old.Cert)
	if !ok || goVerify(chain, x509.ExtKeyUsageClientAuth, old.Cert) != nil {
		t.Fatal("a client certificate of the new CA with the cross does not verify against the old CA")
	}
	openssl.Verify(t, pki.EncodeCert(old.Cert), pki.EncodeCerts(chain...), "sslclient")
	// A cross certificate for another CA does not bridge.
	other := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	if _, ok := pki.BridgeChain(cl.Cert, nil, cross, other.Cert); ok {
		t.Error("bridged to a CA that did not cross-sign")
	}
}

// A root made before CAs had names of their own and no path length limit
// (pathlen 0, one name for every CA) cannot anchor a cross certificate:
// BridgeChain says so instead of handing out a chain that fails.
func TestCrossSignLegacyRoot(t *testing.T) {
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{Organization: []string{"Joblet"}, OrganizationalUnit: []string{"CA"}, CommonName: "Joblet-CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour * 24 * 365), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(nil, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	legacy, _ := x509.ParseCertificate(der)
	old := &pki.CA{Cert: legacy, Key: key}
	next := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	cross, err := pki.CrossSign(next.Cert, old, now)
	if err != nil {
		t.Fatal(err)
	}
	ckey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	cl, _ := next.IssueClient(ckey.Public(), pki.Reader, now, pki.DefaultClientLifetime)
	chain, ok := pki.BridgeChain(cl.Cert, nil, cross, legacy)
	if ok || len(chain) != 1 {
		t.Fatal("bridged under a pathlen 0 root")
	}
	if err := goVerify([]*x509.Certificate{cl.Cert, cross}, x509.ExtKeyUsageClientAuth, legacy); err == nil {
		t.Fatal("Go accepted a cross certificate under a pathlen 0 root: BridgeChain could allow it")
	}
	// Two CAs of one name cannot be cross-signed at all.
	if _, err := pki.CrossSign(legacy, next, now); err != nil {
		t.Logf("(a distinct name is enough: %v)", err)
	}
	same := &x509.Certificate{SerialNumber: big.NewInt(8), Subject: legacy.Subject, NotBefore: legacy.NotBefore, NotAfter: legacy.NotAfter, IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	k2, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	der, _ = x509.CreateCertificate(nil, same, same, k2.Public(), k2)
	twin, _ := x509.ParseCertificate(der)
	if _, err := pki.CrossSign(twin, old, now); err == nil {
		t.Fatal("cross-signed a CA with its issuer's name")
	}
}

// intermediate issues a CA under issuer (a stand-in for the node-issuing CA).
func intermediate(t *testing.T, issuer *pki.CA, last bool) *pki.CA {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "intermediate", SerialNumber: time.Now().String()},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour * 300), IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: last,
		KeyUsage: x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(nil, tmpl, issuer.Cert, key.Public(), issuer.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &pki.CA{Cert: c, Key: key}
}
