package pki_test

import (
	"crypto/x509"
	"testing"

	"github.com/ehsaniara/joblet/internal/pki"
)

func BenchmarkGenerateKey(b *testing.B) {
	for _, kt := range pki.KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			for b.Loop() {
				if _, err := pki.GenerateKey(kt, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIssueServer signs a server certificate with a CA of each type.
func BenchmarkIssueServer(b *testing.B) {
	sans, _ := pki.ParseSANs(pki.DefaultSANNames)
	for _, kt := range pki.KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			ca := newCA(b, kt, pki.DefaultCALifetime)
			leaf, _ := pki.GenerateKey(pki.ECDSAP256, nil)
			for b.Loop() {
				if _, err := ca.IssueServer(leaf.Public(), sans, now, pki.DefaultServerLifetime); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyLeaf(b *testing.B) {
	sans, _ := pki.ParseSANs(pki.DefaultSANNames)
	for _, kt := range pki.KeyTypes {
		b.Run(string(kt), func(b *testing.B) {
			ca := newCA(b, kt, pki.DefaultCALifetime)
			leaf, _ := pki.GenerateKey(pki.ECDSAP256, nil)
			is, _ := ca.IssueServer(leaf.Public(), sans, now, pki.DefaultServerLifetime)
			roots := []*x509.Certificate{ca.Cert}
			for b.Loop() {
				if err := pki.VerifyLeaf(is.Cert, roots, x509.ExtKeyUsageServerAuth, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
