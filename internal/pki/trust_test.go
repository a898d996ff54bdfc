package pki_test

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

func signTrust(t *testing.T, ts *pki.TrustState, by *pki.CA) []byte {
	t.Helper()
	b, err := pki.SignTrust(context.Background(), ts, by)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTrustStateSignVerify(t *testing.T) {
	for _, kt := range []pki.KeyType{pki.ECDSAP256, pki.RSA2048} {
		t.Run(string(kt), func(t *testing.T) {
			root := newCA(t, kt, 24*time.Hour)
			ts := pki.NewTrustState("joblet", 7, []*x509Cert{root.Cert}, []*x509Cert{root.Cert}, big.NewInt(3), now)
			data := signTrust(t, ts, root)
			got, err := pki.VerifyTrust(data, "joblet", []*x509Cert{root.Cert}, nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got.Version != 7 || got.MinCRL.Int64() != 3 || !got.Trusts(root.Cert) || got.Expired(now) {
				t.Fatalf("round trip: %+v", got)
			}
			// Another fleet's state is not this one's.
			if _, err := pki.VerifyTrust(data, "other", []*x509Cert{root.Cert}, nil, nil); err == nil {
				t.Fatal("a state of fleet joblet accepted as fleet other's")
			}
		})
	}
}

type x509Cert = x509.Certificate

func TestTrustStateRefusesForeignAndTampered(t *testing.T) {
	root := newCA(t, pki.ECDSAP256, 24*time.Hour)
	evil := newCA(t, pki.ECDSAP256, 24*time.Hour)
	// The attacker's own CA, signed by itself, listing the real root too.
	forged := signTrust(t, pki.NewTrustState("joblet", 99, []*x509Cert{evil.Cert, root.Cert}, nil, nil, now), evil)
	if _, err := pki.VerifyTrust(forged, "joblet", []*x509Cert{root.Cert}, nil, nil); !errors.Is(err, pki.ErrTrustSignature) {
		t.Fatalf("a state signed by a foreign CA: %v, want ErrTrustSignature", err)
	}
	// A cross certificate the attacker made does not link: the real root never signed it.
	fakeLink, err := pki.CrossSign(evil.Cert, evil, now)
	if err == nil {
		forged = signTrust(t, pki.NewTrustState("joblet", 99, []*x509Cert{evil.Cert}, []*x509Cert{root.Cert, fakeLink}, nil, now), evil)
		if _, err := pki.VerifyTrust(forged, "joblet", []*x509Cert{root.Cert}, nil, nil); !errors.Is(err, pki.ErrTrustSignature) {
			t.Fatalf("a self-made lineage link: %v, want ErrTrustSignature", err)
		}
	}
	// The real root's state with its payload changed (the attacker's CA added).
	good := signTrust(t, pki.NewTrustState("joblet", 5, []*x509Cert{root.Cert}, nil, nil, now), root)
	var env map[string]any
	if err := json.Unmarshal(good, &env); err != nil {
		t.Fatal(err)
	}
	body, _ := base64.StdEncoding.DecodeString(env["payload"].(string))
	var payload map[string]any
	_ = json.Unmarshal(body, &payload)
	payload["roots"] = []any{base64.StdEncoding.EncodeToString(evil.Cert.Raw), base64.StdEncoding.EncodeToString(root.Cert.Raw)}
	body, _ = json.Marshal(payload)
	env["payload"] = base64.StdEncoding.EncodeToString(body)
	tampered, _ := json.Marshal(env)
	if _, err := pki.VerifyTrust(tampered, "joblet", []*x509Cert{root.Cert}, nil, nil); !errors.Is(err, pki.ErrTrustSignature) {
		t.Fatalf("a tampered payload: %v, want ErrTrustSignature", err)
	}
	// A PEM bundle (the format from before) and junk are not signed states.
	for _, junk := range [][]byte{pki.EncodeCert(evil.Cert), []byte("garbage"), []byte("{}"), []byte(`{"payloadType":"x"}`)} {
		if _, err := pki.VerifyTrust(junk, "joblet", []*x509Cert{root.Cert}, nil, nil); err == nil {
			t.Fatalf("%q accepted", junk)
		}
	}
	if _, err := pki.VerifyTrust([]byte("{"+strings.Repeat(" ", pki.MaxTrustSize)+"}"), "joblet", nil, nil, nil); !errors.Is(err, pki.ErrTrustUnsigned) {
		t.Fatalf("an oversized state: %v", err)
	}
}

func TestTrustStateRollback(t *testing.T) {
	root := newCA(t, pki.ECDSAP256, 24*time.Hour)
	anchors := []*x509Cert{root.Cert}
	v5 := signTrust(t, pki.NewTrustState("joblet", 5, anchors, nil, big.NewInt(1), now), root)
	v6 := signTrust(t, pki.NewTrustState("joblet", 6, anchors, nil, big.NewInt(2), now), root)
	held, err := pki.VerifyTrust(v6, "joblet", anchors, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := pki.VerifyTrust(v5, "joblet", anchors, held, nil); !errors.Is(err, pki.ErrTrustRollback) {
		t.Fatalf("an older version: %v, want ErrTrustRollback", err)
	}
	other6 := signTrust(t, pki.NewTrustState("joblet", 6, anchors, nil, big.NewInt(1), now), root)
	if _, err := pki.VerifyTrust(other6, "joblet", anchors, held, nil); !errors.Is(err, pki.ErrTrustRollback) {
		t.Fatalf("the same version with other content: %v, want ErrTrustRollback", err)
	}
	if _, err := pki.VerifyTrust(v6, "joblet", anchors, held, nil); err != nil {
		t.Fatalf("the version held, again: %v", err)
	}
}

// Three rotations: a reader that holds (or pins) only the first root
// accepts the state the fourth root signs, through the lineage of cross
// certificates; without the lineage it refuses it.
func TestTrustStateLineage(t *testing.T) {
	roots := []*pki.CA{newCA(t, pki.ECDSAP256, 24*time.Hour)}
	lineage := []*x509Cert{roots[0].Cert}
	for i := 0; i < 3; i++ {
		next := newCA(t, pki.ECDSAP256, 24*time.Hour)
		cross, err := pki.CrossSign(next.Cert, roots[len(roots)-1], now)
		if err != nil {
			t.Fatal(err)
		}
		roots = append(roots, next)
		lineage = append(lineage, cross)
	}
	last := roots[len(roots)-1]
	data := signTrust(t, pki.NewTrustState("joblet", 9, []*x509Cert{last.Cert}, lineage, nil, now), last)
	ts, err := pki.VerifyTrust(data, "joblet", []*x509Cert{roots[0].Cert}, nil, nil)
	if err != nil {
		t.Fatalf("the first root's holder: %v", err)
	}
	if a := ts.PinAnchor(pki.PinOf(roots[0].Cert)); a == nil || !a.Equal(roots[0].Cert) {
		t.Fatal("the first root's pin finds no anchor in the lineage")
	}
	cut := signTrust(t, pki.NewTrustState("joblet", 9, []*x509Cert{last.Cert}, lineage[2:], nil, now), last)
	if _, err := pki.VerifyTrust(cut, "joblet", []*x509Cert{roots[0].Cert}, nil, nil); !errors.Is(err, pki.ErrTrustSignature) {
		t.Fatalf("a broken lineage: %v, want ErrTrustSignature", err)
	}
	if _, err := pki.VerifyTrust(cut, "joblet", []*x509Cert{roots[1].Cert}, nil, nil); err != nil {
		t.Fatalf("the second root's holder, with the links after it: %v", err)
	}
}

func TestTrustStateDue(t *testing.T) {
	root := newCA(t, pki.ECDSAP256, 24*time.Hour)
	ts := pki.NewTrustState("joblet", 1, []*x509Cert{root.Cert}, nil, nil, now)
	if ts.Due(now) || ts.Expired(now) {
		t.Fatal("a new state is due or expired")
	}
	if !ts.Due(now.Add(pki.TrustLifetime/2+time.Second)) || ts.Expired(now.Add(pki.TrustLifetime/2+time.Second)) {
		t.Fatal("half-way: want due, not expired")
	}
	if !ts.Expired(now.Add(pki.TrustLifetime + time.Second)) {
		t.Fatal("past its expiry: want expired")
	}
	if _, err := pki.SignTrust(context.Background(), ts, newCA(t, pki.ECDSAP256, time.Hour)); err == nil {
		t.Fatal("signed by a root it does not list")
	}
}

func FuzzVerifyTrust(f *testing.F) {
	root := newCA(f, pki.ECDSAP256, 24*time.Hour)
	good, _ := pki.SignTrust(context.Background(), pki.NewTrustState("joblet", 1, []*x509Cert{root.Cert}, nil, nil, now), root)
	f.Add(good)
	f.Add([]byte("{}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ts, err := pki.VerifyTrust(data, "joblet", []*x509Cert{root.Cert}, nil, nil)
		if err == nil && !ts.Trusts(root.Cert) && len(ts.RootCerts()) == 0 {
			t.Fatal("accepted a state with no root")
		}
	})
}

// PeekTrustVersion reads the version (and checks the fleet) of a state
// without its certificates or signature, and refuses what is not one.
func TestPeekTrustVersion(t *testing.T) {
	root := newCA(t, pki.ECDSAP256, 24*time.Hour)
	data := signTrust(t, pki.NewTrustState("joblet", 42, []*x509Cert{root.Cert}, nil, nil, now), root)
	if v, err := pki.PeekTrustVersion(data, "joblet"); err != nil || v != 42 {
		t.Fatalf("got %d %v, want 42", v, err)
	}
	if _, err := pki.PeekTrustVersion(data, "other"); err == nil {
		t.Fatal("another fleet's state peeked as this one's")
	}
	for _, junk := range [][]byte{nil, []byte("not a state"), []byte(`{"payloadType":"text/plain","payload":""}`),
		[]byte(`{"payloadType":"` + pki.TrustPayloadType + `","payload":"!!"}`), make([]byte, pki.MaxTrustSize+1)} {
		if _, err := pki.PeekTrustVersion(junk, ""); !errors.Is(err, pki.ErrTrustUnsigned) {
			t.Errorf("%.40q: %v, want ErrTrustUnsigned", junk, err)
		}
	}
}

// junkTrust is an unsigned trust state of nearly MaxTrustSize bytes, its
// roots one certificate over and over: the costliest offer a caller can
// make a node read before any rate limit.
func junkTrust(b *testing.B) []byte {
	root := newCA(b, pki.ECDSAP256, 24*time.Hour)
	st := pki.TrustState{Fleet: "joblet", Version: 1 << 30}
	for {
		st.Roots = append(st.Roots, root.Cert.Raw)
		body, _ := json.Marshal(st)
		env, _ := json.Marshal(map[string]any{"payloadType": pki.TrustPayloadType, "payload": base64.StdEncoding.EncodeToString(body),
			"signatures": []map[string]string{{"keyid": "x", "sig": "AAAA"}}})
		if len(env) > pki.MaxTrustSize-2048 {
			return env
		}
	}
}

// BenchmarkOfferedTrust is what the first look at an offered trust state
// costs a node: all of it (PeekTrust: its certificates parsed), or its
// version alone (PeekTrustVersion), on the largest state a caller may send,
// against the signature check the rate limit guards (VerifyTrust of a
// genuine state).
func BenchmarkOfferedTrust(b *testing.B) {
	junk := junkTrust(b)
	b.Run("PeekTrust/max", func(b *testing.B) {
		for b.Loop() {
			if _, err := pki.PeekTrust(junk, "joblet"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("PeekTrustVersion/max", func(b *testing.B) {
		for b.Loop() {
			if _, err := pki.PeekTrustVersion(junk, "joblet"); err != nil {
				b.Fatal(err)
			}
		}
	})
	root := newCA(b, pki.ECDSAP256, 24*time.Hour)
	genuine, err := pki.SignTrust(context.Background(), pki.NewTrustState("joblet", 7, []*x509Cert{root.Cert}, nil, nil, now), root)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("VerifyTrust/genuine", func(b *testing.B) {
		for b.Loop() {
			if _, err := pki.VerifyTrust(genuine, "joblet", []*x509Cert{root.Cert}, nil, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}
