package issuer_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ehsaniara/joblet/internal/awsident"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/issuer"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/awspeople"
)

var motoURL string

func TestMain(m *testing.M) {
	mo := awspeople.Moto()
	motoURL = mo.URL
	code := m.Run()
	mo.Stop()
	os.Exit(code)
}

func ca(t *testing.T, parent *pki.CA) *pki.CA {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	if parent == nil {
		cert, err := pki.NewCA(key, time.Now(), 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return &pki.CA{Cert: cert, Key: key}
	}
	is, err := parent.IssueUserCA(key.Public(), time.Now(), time.Hour*24)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: is.Cert, Key: key}
}

// The issuer over HTTPS, against moto's STS and IAM with signatures
// checked: alice (developer), bob's session of admins (admin) get a
// certificate naming them, for their key, that chains to the root for
// client auth; bob himself (unmapped) is refused naming the policy; a
// proof replayed with another key, or signed for another fleet, is refused.
func TestLoginIssuesAPersonsCertificate(t *testing.T) {
	ctx := context.Background()
	people := awspeople.Make(t, motoURL)
	root := ca(t, nil)
	user := ca(t, root)
	signed, err := idpolicy.Sign(ctx, &idpolicy.Policy{Fleet: "joblet", Version: 1, Issued: time.Now(), Expires: time.Now().Add(time.Hour), Rules: []idpolicy.Rule{
		{User: "arn:aws:iam::" + awspeople.Account + ":user/alice", Grant: pki.Developer},
		{Role: "arn:aws:iam::" + awspeople.Account + ":role/people/admins", Session: "bob-*", Grant: pki.Admin},
	}}, root)
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer.Issuer{Fleet: "joblet", AWS: awspeople.Config(motoURL, nil), STS: http.DefaultClient, Now: time.Now,
		Material: func(context.Context) (*issuer.Material, error) {
			pol, err := idpolicy.Verify(signed, "joblet", []*x509.Certificate{root.Cert}, nil, time.Now())
			return &issuer.Material{CA: user, Policy: pol}, err
		}}
	srv := httptest.NewTLSServer(is)
	defer srv.Close()
	client := srv.Client()
	login := func(cfg aws.Config, audience string, keyDER, proofKey []byte) (*issuer.Response, int, string) {
		t.Helper()
		proof, err := awsident.Prove(ctx, cfg, audience, awsident.KeyHash(proofKey), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		body, _ := json.Marshal(issuer.Request{Proof: *proof, PublicKey: keyDER})
		resp, err := client.Post(srv.URL, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var buf bytes.Buffer
		buf.ReadFrom(resp.Body)
		if resp.StatusCode != http.StatusOK {
			return nil, resp.StatusCode, buf.String()
		}
		var r issuer.Response
		if err := json.Unmarshal(buf.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		return &r, resp.StatusCode, ""
	}
	newKey := func() []byte {
		k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		der, _ := x509.MarshalPKIXPublicKey(k.Public())
		return der
	}
	roots := x509.NewCertPool()
	roots.AddCert(root.Cert)
	for _, c := range []struct {
		who    string
		cfg    aws.Config
		role   pki.Role
		person string
	}{
		{"alice", people.Alice, pki.Developer, "arn:aws:iam::" + awspeople.Account + ":user/alice"},
		{"bob as admins", people.BobAsAdmin, pki.Admin, "arn:aws:iam::" + awspeople.Account + ":role/admins#bob-laptop"},
	} {
		key := newKey()
		r, code, msg := login(c.cfg, "joblet", key, key)
		if r == nil {
			t.Fatalf("%s: HTTP %d: %s", c.who, code, msg)
		}
		chain, err := pki.ParseCerts([]byte(r.Chain))
		if err != nil || len(chain) != 2 {
			t.Fatalf("%s: chain: %v", c.who, err)
		}
		inter := x509.NewCertPool()
		inter.AddCert(chain[1])
		if _, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: the certificate does not chain to the root: %v", c.who, err)
		}
		got, _ := x509.MarshalPKIXPublicKey(chain[0].PublicKey)
		p, ok, _ := pki.PersonOf(chain[0])
		if !bytes.Equal(got, key) || !ok || p.ARN != c.person || p.Role != c.role || r.Role != c.role {
			t.Errorf("%s: certificate for %+v (role %s), want %s as %s for the key asked", c.who, p, r.Role, c.person, c.role)
		}
		if life := chain[0].NotAfter.Sub(time.Now()); life > issuer.DefaultLifetime || life < issuer.DefaultLifetime-time.Minute {
			t.Errorf("%s: lives %v", c.who, life)
		}
	}
	key, other := newKey(), newKey()
	for what, c := range map[string]struct {
		cfg           aws.Config
		audience      string
		key, proofKey []byte
		says          string
	}{
		"bob (no rule)":                     {people.Bob, "joblet", key, key, "identity policy"},
		"a proof replayed with another key": {people.Alice, "joblet", other, key, "another public key"},
		"a proof signed for another fleet":  {people.Alice, "joblet-staging", key, key, "audience"},
	} {
		if r, code, msg := login(c.cfg, c.audience, c.key, c.proofKey); r != nil || code != http.StatusForbidden || !strings.Contains(msg, c.says) {
			t.Errorf("%s: HTTP %d %q, want 403 naming %q", what, code, msg, c.says)
		}
	}
}

// counting is a transport to the real STS (moto) that records how many
// requests are in flight at once, and holds each a moment.
type counting struct {
	mu       sync.Mutex
	now, max int
}

func (c *counting) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.now++
	c.max = max(c.max, c.now)
	c.mu.Unlock()
	time.Sleep(50 * time.Millisecond)
	defer func() { c.mu.Lock(); c.now--; c.mu.Unlock() }()
	return http.DefaultTransport.RoundTrip(r)
}

// A flood of logins sends at most MaxInFlight proofs to STS at once, and
// every caller is served in turn: none is refused for arriving last.
func TestLoginIssuerBoundsCallsToSTS(t *testing.T) {
	ctx := context.Background()
	people := awspeople.Make(t, motoURL)
	root := ca(t, nil)
	user := ca(t, root)
	signed, err := idpolicy.Sign(ctx, &idpolicy.Policy{Fleet: "joblet", Version: 1, Issued: time.Now(), Expires: time.Now().Add(time.Hour), Rules: []idpolicy.Rule{
		{User: "arn:aws:iam::" + awspeople.Account + ":user/alice", Grant: pki.Developer}}}, root)
	if err != nil {
		t.Fatal(err)
	}
	tr := &counting{}
	is := &issuer.Issuer{Fleet: "joblet", AWS: awspeople.Config(motoURL, nil), STS: &http.Client{Transport: tr}, Now: time.Now, MaxInFlight: 2,
		Material: func(context.Context) (*issuer.Material, error) {
			pol, err := idpolicy.Verify(signed, "joblet", []*x509.Certificate{root.Cert}, nil, time.Now())
			return &issuer.Material{CA: user, Policy: pol}, err
		}}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
			der, _ := x509.MarshalPKIXPublicKey(k.Public())
			p, err := awsident.Prove(ctx, people.Alice, "joblet", awsident.KeyHash(der), time.Now())
			if err == nil {
				_, err = is.Issue(ctx, &issuer.Request{Proof: *p, PublicKey: der})
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("a login of the flood: %v", err)
		}
	}
	if tr.max > 2 || tr.max == 0 {
		t.Errorf("%d proofs were sent to STS at once, want at most 2", tr.max)
	}
}
