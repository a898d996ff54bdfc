package pki_test

import (
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/pki"
)

func FuzzParseSANs(f *testing.F) {
	for _, s := range []string{"localhost,127.0.0.1", "::1", "0.0.0.0", "a.b:80", "*.x.y", ",", "[::1]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sans, err := pki.ParseSANs(pki.SplitList(s))
		if err != nil {
			return
		}
		for _, ip := range sans.IPs {
			if ip.IsUnspecified() {
				t.Fatalf("accepted the unspecified address from %q", s)
			}
		}
		for _, d := range sans.DNS {
			if d == "" || strings.ContainsAny(d, ": _") {
				t.Fatalf("accepted DNS name %q from %q", d, s)
			}
		}
	})
}

func FuzzParsePEM(f *testing.F) {
	ca := newCA(f, pki.ECDSAP256, pki.DefaultCALifetime)
	key, _ := pki.EncodeKey(ca.Key)
	f.Add(pki.EncodeCert(ca.Cert))
	f.Add(key)
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n\n-----END CERTIFICATE-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if certs, err := pki.ParseCerts(b); err == nil && len(certs) == 0 {
			t.Fatal("no error and no certificate")
		}
		if k, err := pki.ParseKey(b); err == nil && k == nil {
			t.Fatal("no error and no key")
		}
	})
}
