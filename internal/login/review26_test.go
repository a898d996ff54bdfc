package login

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/issuer"
	"github.com/ehsaniara/joblet/internal/pki"
)

// Attacker review of issue 26: `rnx config init --issuer URL
// --ca-fingerprint PIN` checks only that the pinned root is among the roots
// the issuer sends, then writes every root it sent, and its trust state
// unverified, into the config. A malicious issuer host (or whoever holds
// its HTTPS key) adds a root of its own beside the pinned one, and rnx then
// trusts any "node" that root signs: the pin no longer decides what the
// person trusts. With a pin, the trust must be what verifies from the pin
// alone (as the store path's checkPin does).
func TestReview26PinnedIssuerAddsARoot(t *testing.T) {
	now := time.Now()
	mk := func() *pki.CA {
		k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		c, err := pki.NewCA(k, now.Add(-time.Hour), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return &pki.CA{Cert: c, Key: k}
	}
	real, evil := mk(), mk()
	state := func(by *pki.CA, roots ...*pki.CA) string {
		var rs []*x509.Certificate
		for _, r := range roots {
			rs = append(rs, r.Cert)
		}
		b, err := pki.SignTrust(context.Background(), pki.NewTrustState("joblet", 7, rs, nil, nil, now), by)
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	both := string(pki.EncodeCerts(real.Cert, evil.Cert))
	for _, c := range []struct {
		what  string
		hello issuer.Hello
	}{
		{"two roots, no trust state", issuer.Hello{Fleet: "joblet", Trust: both}},
		{"two roots and the fleet's real trust state (which lists one)", issuer.Hello{Fleet: "joblet", Trust: both, TrustState: state(real, real)}},
		{"two roots and a trust state the added root signed", issuer.Hello{Fleet: "joblet", Trust: both, TrustState: state(evil, real, evil)}},
	} {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			json.NewEncoder(w).Encode(c.hello)
		}))
		pin := pki.PinOf(real.Cert)
		n, err := PeopleNode(context.Background(), srv.URL, string(pki.EncodeCert(srv.Certificate())), "lb:50051", &pin)
		srv.Close()
		if err != nil {
			continue // refused: fine
		}
		cas, _ := pki.ParseCerts([]byte(n.CA))
		for _, ca := range cas {
			if ca.Equal(evil.Cert) {
				t.Errorf("%s: the config trusts a root the pin does not reach", c.what)
			}
		}
		if n.Trust != "" {
			if _, err := pki.VerifyTrust([]byte(n.Trust), "joblet", []*x509.Certificate{real.Cert}, nil, nil); err != nil {
				t.Errorf("%s: the config holds a trust state the pinned root does not vouch for: %v", c.what, err)
			}
		}
	}
}
