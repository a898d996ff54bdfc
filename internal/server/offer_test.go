package server_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"math/big"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/internal/server"
)

// syncBuf is a log sink tests read while the node writes.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// offerFleet is a node holding the fleet's CRL (one serial revoked), an
// admin connection, and the fleet's CA to sign offers with.
type offerFleet struct {
	*fleet
	ca      pki.CA
	held    *x509.RevocationList
	admin   *client.Conn
	log     *syncBuf
	entries []x509.RevocationListEntry
}

func newOfferFleet(t *testing.T) *offerFleet {
	st := storetest.NewMemoryStore()
	startNode(t, st) // the fleet
	if _, err := (&certs.Fleet{Store: st, Log: quiet}).Revoke(context.Background(), big.NewInt(0x1234), 1); err != nil {
		t.Fatal(err)
	}
	buf := &syncBuf{}
	f := startNodeLog(t, st, slog.New(slog.NewTextHandler(buf, nil)))
	held, err := pki.ParseCRLUnverified([]byte(f.srv.Security.CRL))
	if err != nil || held.Number == nil {
		t.Fatalf("the node holds no numbered CRL: %v", err)
	}
	return &offerFleet{fleet: f, ca: fleetCA(t, st), held: held, admin: dial(t, "default", f.rnx.Nodes["default"]), log: buf,
		entries: held.RevokedCertificateEntries}
}

func (o *offerFleet) crl(t *testing.T, ca pki.CA, number int64, extra ...*big.Int) []byte {
	t.Helper()
	entries := append([]x509.RevocationListEntry{}, o.entries...)
	for _, s := range extra {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	b, err := ca.NewCRL(entries, new(big.Int).Add(o.held.Number, big.NewInt(number)), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// forger is a CA with the fleet CA's name (subject and key id) and
// another key.
func forger(t *testing.T, ca pki.CA) pki.CA {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	tmpl := *ca.Cert
	tmpl.PublicKey, tmpl.Raw, tmpl.RawSubjectPublicKeyInfo = nil, nil, nil
	der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return pki.CA{Cert: c, Key: key}
}

// nodeCRL is the CRL the node serves with now.
func (o *offerFleet) nodeCRL(t *testing.T) string {
	t.Helper()
	info, err := o.admin.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return string(info.Crl)
}

// A forged (another key, same name), older, oversized, unsigned or
// serial-dropping CRL handed to a node is refused and logged, and the node
// keeps the CRL it had; a genuine newer one is taken at once, and the
// certificate it revokes is refused on its next call (on the connection it
// already had) and at its next handshake, without any store.
func TestOfferedCRLIsVerifiedLikeTheStores(t *testing.T) {
	o := newOfferFleet(t)
	before := o.nodeCRL(t)

	forged := o.crl(t, forger(t, o.ca), 100)
	unsigned := o.crl(t, o.ca, 100)
	block, _ := pem.Decode(unsigned)
	block.Bytes[len(block.Bytes)-3] ^= 0xff // inside the signature
	unsigned = pem.EncodeToMemory(block)
	dropping, err := o.ca.NewCRL(nil, new(big.Int).Add(o.held.Number, big.NewInt(100)), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	older := o.crl(t, o.ca, -1)
	for _, c := range []struct {
		name string
		crl  []byte
		code codes.Code
		log  string
	}{
		{"forged", forged, codes.InvalidArgument, "does not verify"},
		{"unsigned", unsigned, codes.InvalidArgument, "does not verify"},
		{"oversized", bytes.Repeat([]byte("A"), server.MaxOfferedCRL+1), codes.InvalidArgument, "above the"},
		{"garbage", []byte("not a CRL"), codes.InvalidArgument, "does not parse"},
		{"dropping a serial", dropping, codes.InvalidArgument, "no longer lists"},
		{"older", older, codes.OK, "not newer"},
		{"same number", o.crl(t, o.ca, 0, big.NewInt(0x99)), codes.OK, "not newer"},
	} {
		res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{Crl: c.crl})
		if status.Code(err) != c.code || (err == nil && res.Taken) {
			t.Errorf("%s: got %v %v, want %s and not taken", c.name, res, err, c.code)
		}
		if now := o.nodeCRL(t); now != before {
			t.Errorf("%s: the node's CRL changed", c.name)
		}
		if !strings.Contains(o.log.String(), c.log) {
			t.Errorf("%s: no refusal logged with %q:\n%s", c.name, c.log, o.log.String())
		}
	}

	// A client certificate of the fleet, then a newer CRL revoking it.
	certPEM, keyPEM := clientCert(t, o.ca, []string{string(pki.Admin)}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	leaf, _ := pki.ParseCert([]byte(certPEM))
	victimEntry := *o.rnx.Nodes["default"]
	victimEntry.Cert, victimEntry.Key = certPEM, keyPEM
	victim := dial(t, "default", &victimEntry)
	if _, err := victim.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil {
		t.Fatalf("before the offer: %v", err)
	}
	newer := o.crl(t, o.ca, 1, leaf.SerialNumber)
	res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{Crl: newer})
	if err != nil || !res.Taken {
		t.Fatalf("a genuine newer CRL: %v %v", res, err)
	}
	if o.nodeCRL(t) != string(newer) {
		t.Fatal("the node does not serve the CRL it took")
	}
	if _, err := victim.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err == nil {
		t.Fatal("the revoked certificate's next call, on its open connection, was served")
	}
	fresh := dial(t, "default", &victimEntry)
	if _, err := fresh.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err == nil {
		t.Fatal("the revoked certificate's new connection was served")
	}
	if res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{Crl: newer}); err != nil || !res.Taken {
		t.Fatalf("the same CRL again: %v %v (want taken: the node holds it)", res, err)
	}
	if !strings.Contains(o.log.String(), "CRL taken from a caller") {
		t.Errorf("the taken CRL was not logged:\n%s", o.log.String())
	}
	rec := httptest.NewRecorder()
	o.node.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	for _, want := range []string{`joblet_crl_offers_total{outcome="refused"} 5`, `joblet_crl_offers_total{outcome="not_newer"} 2`,
		`joblet_crl_offers_total{outcome="taken"} 1`, `joblet_crl_offers_total{outcome="held"} 1`} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

// One caller flooding forged high-numbered CRLs runs out of tokens
// (RESOURCE_EXHAUSTED) without starving another caller's genuine newer
// CRL; old CRLs are answered from the number alone and cost no token.
func TestOfferFloodDoesNotStarveARealPush(t *testing.T) {
	o := newOfferFleet(t)
	forged := o.crl(t, forger(t, o.ca), 1000)
	older := o.crl(t, o.ca, -1)

	certPEM, keyPEM := clientCert(t, o.ca, []string{string(pki.Reader)}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	attackerEntry := *o.rnx.Nodes["default"]
	attackerEntry.Cert, attackerEntry.Key = certPEM, keyPEM
	attacker := dial(t, "default", &attackerEntry)
	exhausted := false
	for i := 0; i < 50 && !exhausted; i++ {
		_, err := attacker.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{Crl: forged})
		exhausted = status.Code(err) == codes.ResourceExhausted
	}
	if !exhausted {
		t.Fatal("50 forged offers from one caller were all checked: no rate limit")
	}
	for i := 0; i < 50; i++ {
		res, err := attacker.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{Crl: older})
		if err != nil || res.Taken {
			t.Fatalf("an older CRL while rate-limited: %v %v (want answered by its number, not taken)", res, err)
		}
	}
	newer := o.crl(t, o.ca, 1, big.NewInt(0x4242))
	res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{Crl: newer})
	if err != nil || !res.Taken {
		t.Fatalf("the operator's push during the flood: %v %v", res, err)
	}
}

// A client holding a newer CRL than the node carries it: the node answers
// the call with its older number, the client offers its CRL once, and the
// certificate it revokes is refused from its next call on. The client's
// own call is served either way.
func TestClientCarriesItsNewerCRL(t *testing.T) {
	o := newOfferFleet(t)
	certPEM, keyPEM := clientCert(t, o.ca, []string{string(pki.Admin)}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	leaf, _ := pki.ParseCert([]byte(certPEM))
	victimEntry := *o.rnx.Nodes["default"]
	victimEntry.Cert, victimEntry.Key = certPEM, keyPEM
	victim := dial(t, "default", &victimEntry)
	if _, err := victim.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil {
		t.Fatalf("before: %v", err)
	}

	carrierEntry := *o.rnx.Nodes["default"]
	carrierEntry.CRL = string(o.crl(t, o.ca, 1, leaf.SerialNumber))
	learned := 0
	carrier, err := client.DialLearning("default", &carrierEntry, func([]byte, [][]*x509.Certificate) error { learned++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer carrier.Close()
	for i := 0; i < 3; i++ {
		if _, err := carrier.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); err != nil {
			t.Fatalf("the carrier's own call %d: %v", i, err)
		}
	}
	if learned != 0 {
		t.Fatalf("the carrier learned %d CRLs from a node holding an older one", learned)
	}
	if o.nodeCRL(t) != carrierEntry.CRL {
		t.Fatal("the node did not take the client's newer CRL")
	}
	if _, err := victim.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err == nil {
		t.Fatal("the revoked certificate's next call was served")
	}
	if n := strings.Count(o.log.String(), "CRL taken from a caller"); n != 1 {
		t.Fatalf("the node took a CRL %d times (want 1: carried once)", n)
	}
}
