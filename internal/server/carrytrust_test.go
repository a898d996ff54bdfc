package server_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/pki"
)

// heldTrust is the trust state the offer fleet's node was bootstrapped with.
func (o *offerFleet) heldTrust(t *testing.T) *pki.TrustState {
	t.Helper()
	held, err := pki.PeekTrust([]byte(o.srv.Security.TrustState), "")
	if err != nil {
		t.Fatalf("the node holds no signed trust state: %v", err)
	}
	return held
}

// trust is the node's trust state at version (its roots, lineage and
// node-issuing CAs), naming minCRL, signed by signer (listed among the
// roots when it is not one of them: a forger lists itself).
func (o *offerFleet) trust(t *testing.T, signer pki.CA, version uint64, minCRL *big.Int) []byte {
	t.Helper()
	held := o.heldTrust(t)
	roots := held.RootCerts()
	if !signer.Cert.Equal(o.ca.Cert) {
		roots = append(roots[:len(roots):len(roots)], signer.Cert)
	}
	st := pki.NewTrustState(held.Fleet, version, roots, held.LineageCerts(), minCRL, time.Now()).WithNodeCAs(held.NodeCACerts()...)
	b, err := pki.SignTrust(context.Background(), st, &signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// editTrust changes a signed trust state's envelope: edit gets the
// envelope and its payload (decoded, numbers kept exact) and the
// signatures stay as they were unless edit changes them.
func editTrust(t *testing.T, data []byte, edit func(env, payload map[string]any)) []byte {
	t.Helper()
	var env map[string]any
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	body, err := base64.StdEncoding.DecodeString(env["payload"].(string))
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var payload map[string]any
	if err := dec.Decode(&payload); err != nil {
		t.Fatal(err)
	}
	edit(env, payload)
	body, err = json.Marshal(payload)
	if err != nil {
		t.Fatal(err)
	}
	env["payload"] = base64.StdEncoding.EncodeToString(body)
	out, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// nodeTrust is the version of the trust state the node serves with, as an
// empty offer answers it.
func (o *offerFleet) nodeTrust(t *testing.T) uint64 {
	t.Helper()
	res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return res.TrustVersion
}

// A forged (another CA; or the root's name with another key), tampered,
// unsigned, older, same-version, oversized or garbage trust state handed
// to a node is refused and logged, and the node keeps the state it had; a
// genuine newer one is taken.
func TestOfferedTrustIsVerifiedLikeTheStores(t *testing.T) {
	o := newOfferFleet(t)
	held := o.heldTrust(t)
	before := o.nodeTrust(t)
	if before != held.Version || before == 0 {
		t.Fatalf("the node serves trust state version %d, its file holds %d", before, held.Version)
	}
	next := held.Version + 1
	genuine := o.trust(t, o.ca, next, held.MinCRL)
	evil := pki.CA{}
	{
		key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		cert, err := pki.NewCA(key, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		evil = pki.CA{Cert: cert, Key: key}
	}
	tampered := editTrust(t, genuine, func(_, p map[string]any) { p["version"] = json.Number("9999999999") })
	unsigned := editTrust(t, genuine, func(env, _ map[string]any) { env["signatures"] = []any{} })
	otherFleet := editTrust(t, genuine, func(_, p map[string]any) { p["fleet"] = "other" })
	for _, c := range []struct {
		name  string
		trust []byte
		code  codes.Code
		log   string
	}{
		{"forged by another CA", o.trust(t, evil, next+100, held.MinCRL), codes.InvalidArgument, "not signed by a root"},
		{"forged with the root's name", o.trust(t, forger(t, o.ca), next+100, held.MinCRL), codes.InvalidArgument, "not signed by a root"},
		{"tampered", tampered, codes.InvalidArgument, "not signed by a root"},
		{"unsigned", unsigned, codes.InvalidArgument, "not signed by a root"},
		{"another fleet's", otherFleet, codes.InvalidArgument, "fleet"},
		{"oversized", bytes.Repeat([]byte("{"), pki.MaxTrustSize+1), codes.InvalidArgument, "above the"},
		{"garbage", []byte("not a trust state"), codes.InvalidArgument, "not a signed trust state"},
		{"older", o.trust(t, o.ca, held.Version-1, held.MinCRL), codes.OK, "not newer"},
		{"same version, other content", o.trust(t, o.ca, held.Version, nil), codes.OK, "not newer"},
	} {
		res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: c.trust})
		if status.Code(err) != c.code || (err == nil && res.TrustTaken) {
			t.Errorf("%s: got %v %v, want %s and not taken", c.name, res, err, c.code)
		}
		if err != nil && !strings.Contains(err.Error(), c.log) {
			t.Errorf("%s: refused with %v, want it to say %q", c.name, err, c.log)
		}
		if now := o.nodeTrust(t); now != before {
			t.Errorf("%s: the node's trust state changed to version %d", c.name, now)
		}
		if !strings.Contains(o.log.String(), c.log) {
			t.Errorf("%s: no refusal logged with %q:\n%s", c.name, c.log, o.log.String())
		}
	}
	if strings.Contains(o.log.String(), "trust state taken") {
		t.Fatalf("the node took a refused trust state:\n%s", o.log.String())
	}
	// The signature checks above spent the caller's burst: a genuine offer
	// waits for a token (RESOURCE_EXHAUSTED meanwhile), then is taken.
	res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: genuine})
	for deadline := time.Now().Add(5 * time.Second); status.Code(err) == codes.ResourceExhausted && time.Now().Before(deadline); {
		time.Sleep(200 * time.Millisecond)
		res, err = o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: genuine})
	}
	if err != nil || !res.TrustTaken || res.TrustVersion != next {
		t.Fatalf("a genuine newer trust state: %v %v", res, err)
	}
}

// toldTrust is the trust state version a node tells on a call carrying the
// CRL number held ("" when it tells none).
func toldTrust(t *testing.T, c *client.Conn, held string) string {
	t.Helper()
	var h metadata.MD
	if _, err := c.Node.GetNodeInfo(metadata.AppendToOutgoingContext(ctx(t), pb.CRLNumberKey, held), &pb.GetNodeInfoRequest{}, grpc.Header(&h)); err != nil {
		t.Fatal(err)
	}
	if v := h.Get(pb.TrustVersionKey); len(v) > 0 {
		return v[0]
	}
	return ""
}

// A client holding a newer trust state than the node carries it, with its
// newer CRL, in one offer after its first call: the node takes both, tells
// the new version from then on, and refuses what the CRL revokes on its
// next call. A client holding a forged newer state is still served; the
// node refuses the state (logged), keeps its own, and still takes the
// genuine CRL offered with it.
func TestClientCarriesItsNewerTrust(t *testing.T) {
	o := newOfferFleet(t)
	held := o.heldTrust(t)
	own := pb.FormatCRLNumber(o.held.Number)
	if got := toldTrust(t, dial(t, "default", o.rnx.Nodes["default"]), own); got != strconv.FormatUint(held.Version, 10) {
		t.Fatalf("the node tells trust state version %q, want %d", got, held.Version)
	}
	victim := func() (*client.Conn, *big.Int) {
		certPEM, keyPEM := clientCert(t, o.ca, []string{string(pki.Admin)}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
		leaf, _ := pki.ParseCert([]byte(certPEM))
		e := *o.rnx.Nodes["default"]
		e.Cert, e.Key = certPEM, keyPEM
		c := dial(t, "default", &e)
		if _, err := c.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil {
			t.Fatalf("before: %v", err)
		}
		return c, leaf.SerialNumber
	}
	carryWith := func(crl, trust []byte) {
		t.Helper()
		e := *o.rnx.Nodes["default"]
		e.CRL, e.Trust = string(crl), string(trust)
		learned := 0
		carrier, err := client.DialLearning("default", &e, func([]byte, [][]*x509.Certificate) error { learned++; return nil })
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
	}

	// A forged state (another CA, a newer version) with a genuine newer CRL.
	v1, s1 := victim()
	crl1 := o.crl(t, o.ca, 1, s1)
	evilKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	evilCert, err := pki.NewCA(evilKey, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	carryWith(crl1, o.trust(t, pki.CA{Cert: evilCert, Key: evilKey}, held.Version+5, nil))
	if got := o.nodeTrust(t); got != held.Version {
		t.Fatalf("the node took a forged trust state carried by a client: version %d", got)
	}
	if !strings.Contains(o.log.String(), "not signed by a root") {
		t.Fatalf("the forged state's refusal was not logged:\n%s", o.log.String())
	}
	if o.nodeCRL(t) != string(crl1) {
		t.Fatal("the node did not take the genuine CRL carried with a forged state")
	}
	if _, err := v1.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err == nil {
		t.Fatal("the certificate the carried CRL revokes was served on its next call")
	}

	// A genuine newer state naming a newer CRL, with that CRL.
	v2, s2 := victim()
	crl2 := o.crl(t, o.ca, 2, s1, s2)
	n2, _ := pki.CRLNumber(crl2)
	newer := o.trust(t, o.ca, held.Version+1, n2)
	carryWith(crl2, newer)
	if got := o.nodeTrust(t); got != held.Version+1 {
		t.Fatalf("the node holds trust state version %d after a client carried %d", got, held.Version+1)
	}
	if o.nodeCRL(t) != string(crl2) {
		t.Fatal("the node did not take the CRL carried with the trust state")
	}
	if _, err := v2.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err == nil {
		t.Fatal("the certificate the carried CRL revokes was served on its next call")
	}
	if n := strings.Count(o.log.String(), "trust state taken from a caller"); n != 1 {
		t.Fatalf("the node took a trust state %d times (want 1: carried once):\n%s", n, o.log.String())
	}
	if got := toldTrust(t, dial(t, "default", o.rnx.Nodes["default"]), pb.FormatCRLNumber(n2)); got != strconv.FormatUint(held.Version+1, 10) {
		t.Fatalf("after taking it the node tells trust state version %q, want %d", got, held.Version+1)
	}

	// A newer state alone (the CRL the node holds): carried too.
	e := *o.rnx.Nodes["default"]
	e.CRL, e.Trust = string(crl2), string(o.trust(t, o.ca, held.Version+2, n2))
	c, err := client.DialLearning("default", &e, func([]byte, [][]*x509.Certificate) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Node.GetNodeInfo(ctx(t), &pb.GetNodeInfoRequest{}); err != nil {
		t.Fatal(err)
	}
	if got := o.nodeTrust(t); got != held.Version+2 {
		t.Fatalf("a newer state alone: the node holds version %d, want %d", got, held.Version+2)
	}
}

// A client holding an older CRL but a newer trust state than the node
// learns the node's CRL (the call is refused with it in the trailer, then
// made again), and still hands the node its trust state: the trailer
// tells the node's version too.
func TestClientCarriesTrustAfterLearningCRL(t *testing.T) {
	o := newOfferFleet(t)
	held := o.heldTrust(t)
	e := *o.rnx.Nodes["default"]
	e.CRL, e.Trust = "", string(o.trust(t, o.ca, held.Version+1, held.MinCRL))
	learned := 0
	// As rnx does: the entry keeps the CRL learned (its next call carries
	// that number).
	c, err := client.DialLearning("default", &e, func(crl []byte, _ [][]*x509.Certificate) error { learned++; e.CRL = string(crl); return nil })
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Jobs.ListJobs(ctx(t), &pb.ListJobsRequest{}); err != nil {
		t.Fatal(err)
	}
	if learned != 1 {
		t.Fatalf("the client learned %d CRLs, want the node's", learned)
	}
	if got := o.nodeTrust(t); got != held.Version+1 {
		t.Fatalf("the node holds trust state version %d after the call, want %d", got, held.Version+1)
	}
}

// One caller flooding forged newer trust states runs out of tokens
// (RESOURCE_EXHAUSTED) without starving the operator's genuine one, and
// junk and older states are answered before any token is spent.
func TestTrustOfferFloodDoesNotStarveARealPush(t *testing.T) {
	o := newOfferFleet(t)
	held := o.heldTrust(t)
	certPEM, keyPEM := clientCert(t, o.ca, []string{string(pki.Reader)}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	e := *o.rnx.Nodes["default"]
	e.Cert, e.Key = certPEM, keyPEM
	attacker := dial(t, "default", &e)
	forged := o.trust(t, forger(t, o.ca), held.Version+100, nil)
	exhausted := false
	for i := 0; i < 50 && !exhausted; i++ {
		_, err := attacker.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: forged})
		exhausted = status.Code(err) == codes.ResourceExhausted
	}
	if !exhausted {
		t.Fatal("50 forged trust states from one caller were all checked: no rate limit")
	}
	older := o.trust(t, o.ca, held.Version-1, nil)
	for i := 0; i < 20; i++ {
		if res, err := attacker.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: older}); err != nil || res.TrustTaken {
			t.Fatalf("an older state while rate-limited: %v %v (want answered by its version)", res, err)
		}
		if _, err := attacker.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: []byte("{junk")}); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("junk while rate-limited: %v (want refused as junk)", err)
		}
	}
	res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: o.trust(t, o.ca, held.Version+1, held.MinCRL)})
	if err != nil || !res.TrustTaken {
		t.Fatalf("the operator's push during the flood: %v %v", res, err)
	}
	if !strings.Contains(o.log.String(), "refusalsNotLogged") {
		t.Fatalf("refusals not logged:\n%s", o.log.String())
	}
}
