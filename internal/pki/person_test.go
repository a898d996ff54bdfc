package pki

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/testutil/openssl"
)

// A person's certificate chains root -> user CA -> person for client
// authentication, names the person and the role, lives hours at most; the
// user CA signs no server certificate (Go's verifier refuses it, for
// serverAuth and for the names its constraints exclude).
func TestPersonCertificate(t *testing.T) {
	now := time.Now()
	root := testRoot(t)
	ukey, _ := GenerateKey(ECDSAP256, nil)
	uca, err := root.IssueUserCA(ukey.Public(), now, 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	user := &CA{Cert: uca.Cert, Key: ukey}
	pkey, _ := GenerateKey(ECDSAP256, nil)
	is, err := user.IssuePerson(pkey.Public(), Person{ARN: "arn:aws:iam::111122223333:role/Admins#carol@example.com", Role: Admin}, now, 8*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	roots, inter := x509.NewCertPool(), x509.NewCertPool()
	roots.AddCert(root.Cert)
	inter.AddCert(uca.Cert)
	if _, err := is.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("a person's certificate does not verify for client auth: %v", err)
	}
	// openssl, independently: a client certificate through the user CA,
	// and nothing a server could use.
	chain := append(EncodeCert(is.Cert), EncodeCert(uca.Cert)...)
	openssl.Verify(t, EncodeCert(root.Cert), chain, "sslclient")
	openssl.VerifyFails(t, EncodeCert(root.Cert), chain, "sslserver")
	p, ok, err := PersonOf(is.Cert)
	if err != nil || !ok || p.ARN != "arn:aws:iam::111122223333:role/Admins#carol@example.com" || p.Role != Admin {
		t.Fatalf("PersonOf: %+v %v %v", p, ok, err)
	}
	if _, err := user.IssuePerson(pkey.Public(), Person{ARN: "arn:aws:iam::1:user/a", Role: Reader}, now, 13*time.Hour); err == nil {
		t.Error("a person's certificate for 13 hours was issued")
	}
	srv, err := user.IssueServer(pkey.Public(), SANs{DNS: []string{"joblet.internal"}}, now, time.Hour)
	if err == nil {
		openssl.VerifyFails(t, EncodeCert(root.Cert), append(EncodeCert(srv.Cert), EncodeCert(uca.Cert)...), "sslserver")
		if _, err := srv.Cert.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, CurrentTime: now, DNSName: "joblet.internal"}); err == nil {
			t.Error("a server certificate signed by the user-issuing CA verifies")
		}
	}
	if shared, _ := root.IssueClient(pkey.Public(), Reader, now, time.Hour); shared.Cert != nil {
		if _, ok, _ := PersonOf(shared.Cert); ok {
			t.Error("a shared role certificate names a person")
		}
	}
}

func testRoot(t *testing.T) *CA {
	t.Helper()
	key, err := GenerateKey(ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := NewCA(key, time.Now(), 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &CA{Cert: cert, Key: key}
}
