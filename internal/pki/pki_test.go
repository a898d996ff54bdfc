package pki_test

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
)

var now = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func newCA(t testing.TB, kt pki.KeyType, life time.Duration) *pki.CA {
	t.Helper()
	key, err := pki.GenerateKey(kt, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCA(key, now, life)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}

func TestCertificatesPerKeyType(t *testing.T) {
	for _, kt := range pki.KeyTypes {
		t.Run(string(kt), func(t *testing.T) {
			ca := newCA(t, kt, pki.DefaultCALifetime)
			c := ca.Cert
			if !c.IsCA || c.MaxPathLenZero || c.MaxPathLen != -1 || !pki.AllowsIntermediates(c) {
				t.Errorf("CA: IsCA=%v pathlen=%d zero=%v", c.IsCA, c.MaxPathLen, c.MaxPathLenZero)
			}
			if c.KeyUsage&x509.KeyUsageCertSign == 0 || c.KeyUsage&x509.KeyUsageCRLSign == 0 {
				t.Errorf("CA key usage %v lacks certSign or CRLSign", c.KeyUsage)
			}
			if got := c.Subject.String(); !strings.HasPrefix(got, "SERIALNUMBER=") || !strings.HasSuffix(got, ",CN=Joblet-CA,OU=CA,O=Joblet") {
				t.Errorf("CA subject %q", got)
			}
			if len(c.SubjectKeyId) == 0 || string(c.AuthorityKeyId) != string(c.SubjectKeyId) {
				t.Error("CA lacks subject/authority key id")
			}
			caPEM := pki.EncodeCert(c)
			text := openssl.Text(t, caPEM)
			if strings.Contains(text, "pathlen") {
				t.Errorf("the root carries a path length limit: the node-issuing CA could not sit under it:\n%s", text)
			}
			for _, want := range []string{"CA:TRUE", "Certificate Sign, CRL Sign", "Subject Key Identifier", "Authority Key Identifier"} {
				if !strings.Contains(text, want) {
					t.Errorf("openssl does not show %q in the CA:\n%s", want, text)
				}
			}

			srvKey, _ := pki.GenerateKey(kt, nil)
			sans, err := pki.ParseSANs([]string{"localhost", "joblet", "127.0.0.1", "::1", "node1.example.com", "10.0.0.5"})
			if err != nil {
				t.Fatal(err)
			}
			srv, err := ca.IssueServer(srvKey.Public(), sans, now, pki.DefaultServerLifetime)
			if err != nil {
				t.Fatal(err)
			}
			if srv.Capped {
				t.Error("a 1-year server certificate under a 3-year CA was capped")
			}
			openssl.Verify(t, caPEM, pki.EncodeCert(srv.Cert), "sslserver")
			openssl.VerifyFails(t, caPEM, pki.EncodeCert(srv.Cert), "sslclient")
			stext := openssl.Text(t, pki.EncodeCert(srv.Cert))
			for _, want := range []string{"DNS:localhost", "DNS:joblet", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1", "DNS:node1.example.com", "IP Address:10.0.0.5", "TLS Web Server Authentication"} {
				if !strings.Contains(stext, want) {
					t.Errorf("server certificate lacks %q:\n%s", want, stext)
				}
			}
			keyPEM, _ := pki.EncodeKey(srvKey)
			openssl.KeyMatchesCert(t, keyPEM, pki.EncodeCert(srv.Cert))

			for _, role := range pki.Roles {
				k, _ := pki.GenerateKey(kt, nil)
				cl, err := ca.IssueClient(k.Public(), role, now, pki.DefaultClientLifetime)
				if err != nil {
					t.Fatal(err)
				}
				if got := cl.Cert.Subject.String(); got != "CN="+string(role)+"-client,OU="+string(role)+",O=Joblet" {
					t.Errorf("client subject %q", got)
				}
				openssl.Verify(t, caPEM, pki.EncodeCert(cl.Cert), "sslclient")
				openssl.VerifyFails(t, caPEM, pki.EncodeCert(cl.Cert), "sslserver")
				if r, err := pki.RoleOf(cl.Cert); err != nil || r != role {
					t.Errorf("RoleOf = %q, %v; want %q", r, err, role)
				}
				if bits := cl.Cert.SerialNumber.BitLen(); bits > 128 || bits < 120 {
					t.Errorf("serial has %d bits, want a random 128-bit serial", bits)
				}
			}
			if err := pki.VerifyLeaf(srv.Cert, []*x509.Certificate{c}, x509.ExtKeyUsageServerAuth, now); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLeafNeverOutlivesCA(t *testing.T) {
	ca := newCA(t, pki.ECDSAP256, 48*time.Hour)
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := ca.IssueClient(k.Public(), pki.Admin, now, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if !is.Capped || !is.Cert.NotAfter.Equal(ca.Cert.NotAfter) {
		t.Fatalf("capped=%v notAfter=%v, want capped at the CA's %v", is.Capped, is.Cert.NotAfter, ca.Cert.NotAfter)
	}
	_, err = ca.IssueClient(k.Public(), pki.Admin, now.Add(49*time.Hour), time.Hour)
	if err == nil || !strings.Contains(err.Error(), "CA expired") {
		t.Fatalf("issuing from an expired CA: %v", err)
	}
}

func TestOtherCARejected(t *testing.T) {
	a := newCA(t, pki.ECDSAP256, time.Hour*24)
	b := newCA(t, pki.ECDSAP256, time.Hour*24)
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, _ := b.IssueClient(k.Public(), pki.Reader, now, time.Hour)
	if err := pki.VerifyLeaf(is.Cert, []*x509.Certificate{a.Cert}, x509.ExtKeyUsageClientAuth, now); err == nil {
		t.Fatal("a certificate from another CA verified")
	}
	openssl.VerifyFails(t, pki.EncodeCert(a.Cert), pki.EncodeCert(is.Cert), "sslclient")
}

func TestSANs(t *testing.T) {
	tests := []struct {
		in      []string
		dns     []string
		ips     []string
		wantErr string
	}{
		{in: []string{"localhost", "Node1.Example.COM.", "10.1.2.3", "2001:db8::1", "[::1]"}, dns: []string{"localhost", "node1.example.com"}, ips: []string{"10.1.2.3", "2001:db8::1", "::1"}},
		{in: []string{"a.b", "a.b", "127.0.0.1", "127.0.0.1"}, dns: []string{"a.b"}, ips: []string{"127.0.0.1"}},
		{in: []string{"*.joblet.internal"}, dns: []string{"*.joblet.internal"}},
		{in: []string{"0.0.0.0"}, wantErr: "unspecified"},
		{in: []string{"::"}, wantErr: "unspecified"},
		{in: []string{"host.example.com:50051"}, wantErr: "has a port"},
		{in: []string{"10.0.0.1:443"}, wantErr: "has a port"},
		{in: []string{"a", ""}, wantErr: "empty name"},
		{in: []string{" "}, wantErr: "empty name"},
		{in: []string{"bad_name"}, wantErr: `"bad_name"`},
		{in: []string{"-lead.example"}, wantErr: "hyphen"},
		{in: []string{"a..b"}, wantErr: "empty label"},
		{in: []string{"999.1.1.1"}, wantErr: "looks like an IP"},
		{in: []string{strings.Repeat("a", 64) + ".com"}, wantErr: "longer than 63"},
		{in: []string{"foo.*.com"}, wantErr: "character"},
	}
	for _, tc := range tests {
		t.Run(strings.Join(tc.in, ","), func(t *testing.T) {
			got, err := pki.ParseSANs(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got.DNS, ",") != strings.Join(tc.dns, ",") {
				t.Errorf("DNS = %v, want %v", got.DNS, tc.dns)
			}
			var ips []string
			for _, ip := range got.IPs {
				ips = append(ips, ip.String())
			}
			if strings.Join(ips, ",") != strings.Join(tc.ips, ",") {
				t.Errorf("IPs = %v, want %v", ips, tc.ips)
			}
		})
	}
	if got := pki.SplitList("a,,b"); len(got) != 3 {
		t.Errorf("SplitList keeps empty items for reporting: %q", got)
	}
	if got := pki.SplitList("  "); got != nil {
		t.Errorf("SplitList of blank = %q", got)
	}
	if ip := net.ParseIP("::ffff:10.0.0.1"); ip == nil {
		t.Fatal("sanity")
	}
}

func TestPEM(t *testing.T) {
	ca := newCA(t, pki.RSA2048, time.Hour)
	bundle := pki.EncodeCerts(ca.Cert, ca.Cert)
	certs, err := pki.ParseCerts(bundle)
	if err != nil || len(certs) != 2 {
		t.Fatalf("bundle: %d certs, %v", len(certs), err)
	}
	if _, err := pki.ParseCert(bundle); err == nil {
		t.Error("ParseCert accepted two certificates")
	}
	keyPEM, _ := pki.EncodeKey(ca.Key)
	if _, err := pki.ParseCerts(keyPEM); err == nil || !strings.Contains(err.Error(), "PRIVATE KEY") {
		t.Errorf("a key where a certificate belongs: %v", err)
	}
	for name, data := range map[string][]byte{"empty": nil, "garbage": []byte("hello"), "truncated": keyPEM[:len(keyPEM)/2]} {
		if _, err := pki.ParseKey(data); err == nil {
			t.Errorf("ParseKey(%s) succeeded", name)
		}
		if _, err := pki.ParseCerts(data); err == nil {
			t.Errorf("ParseCerts(%s) succeeded", name)
		}
	}
	// The older encodings openssl and shell tooling write.
	pkcs1 := pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(ca.Key.(*rsa.PrivateKey))})
	if k, err := pki.ParseKey(pkcs1); err != nil || pki.MatchesKey(ca.Cert, k) != nil {
		t.Errorf("PKCS#1: %v", err)
	}
	ec, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	der, _ := x509.MarshalECPrivateKey(ec.(*ecdsa.PrivateKey))
	if _, err := pki.ParseKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
		t.Errorf("SEC 1: %v", err)
	}
	if err := pki.MatchesKey(ca.Cert, ec); !errors.Is(err, pki.ErrKeyMismatch) {
		t.Errorf("MatchesKey with another key = %v", err)
	}
}

func TestRoleOf(t *testing.T) {
	for ou, want := range map[string]pki.Role{"admin": pki.Admin, "viewer": pki.Reader, "reader": pki.Reader, "Developer": pki.Developer} {
		c := &x509.Certificate{}
		c.Subject.OrganizationalUnit = []string{ou}
		if r, err := pki.RoleOf(c); err != nil || r != want {
			t.Errorf("OU %q: %q, %v", ou, r, err)
		}
	}
	for _, ous := range [][]string{nil, {"CA"}, {"root"}, {"admin", "reader"}} {
		c := &x509.Certificate{}
		c.Subject.OrganizationalUnit = ous
		if r, err := pki.RoleOf(c); err == nil {
			t.Errorf("OU %q gave role %q", ous, r)
		}
	}
}

func TestCheckCA(t *testing.T) {
	ca := newCA(t, pki.ECDSAP256, time.Hour)
	if err := pki.CheckCA(ca.Cert, now); err != nil {
		t.Fatal(err)
	}
	if err := pki.CheckCA(ca.Cert, now.Add(2*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("expired CA: %v", err)
	}
	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	leaf, _ := ca.IssueClient(k.Public(), pki.Admin, now, time.Minute)
	if err := pki.CheckCA(leaf.Cert, now); err == nil || !strings.Contains(err.Error(), "not a CA") {
		t.Errorf("leaf as CA: %v", err)
	}
}

func TestParseKeyType(t *testing.T) {
	if _, err := pki.ParseKeyType("ed25519"); err == nil || !strings.Contains(err.Error(), "ecdsa-p256, rsa-2048, rsa-4096") {
		t.Errorf("unknown key type: %v", err)
	}
}
