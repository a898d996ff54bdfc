package pki

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// PeekCRLNumber finds the number x509 finds, with and without entries, a
// nextUpdate or a number, and refuses what is not a CRL.
func TestPeekCRLNumberMatchesX509(t *testing.T) {
	key, _ := GenerateKey(ECDSAP256, nil)
	cert, err := NewCA(key, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	entries := []x509.RevocationListEntry{{SerialNumber: big.NewInt(7), RevocationTime: time.Now()}, {SerialNumber: big.NewInt(9), RevocationTime: time.Now(), ReasonCode: 1}}
	huge := new(big.Int).Lsh(big.NewInt(1), 150)
	for _, c := range []struct {
		name    string
		tmpl    x509.RevocationList
		wantNil bool
	}{
		{"entries and nextUpdate", x509.RevocationList{RevokedCertificateEntries: entries, Number: big.NewInt(1764770000), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, false},
		{"no entries", x509.RevocationList{Number: huge, ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}, false},
		{"a year past 2049 (GeneralizedTime)", x509.RevocationList{RevokedCertificateEntries: entries, Number: big.NewInt(3), ThisUpdate: time.Now(), NextUpdate: time.Date(2060, 1, 1, 0, 0, 0, 0, time.UTC)}, false},
	} {
		der, err := x509.CreateRevocationList(rand.Reader, &c.tmpl, cert, key)
		if err != nil {
			t.Fatal(err)
		}
		p := pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der})
		want, err := CRLNumber(p)
		if err != nil {
			t.Fatal(err)
		}
		got, err := PeekCRLNumber(p)
		if err != nil || got == nil || got.Cmp(want) != 0 {
			t.Errorf("%s: got %v %v, want %v", c.name, got, err, want)
		}
	}
	for _, bad := range [][]byte{nil, []byte("not a CRL"), pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: []byte{0x30, 0x03, 0x30, 0x01}}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})} {
		if n, err := PeekCRLNumber(bad); err == nil {
			t.Errorf("%q: got number %v, want an error", bad, n)
		}
	}
}
