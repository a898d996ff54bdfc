package certs

import (
	"crypto/x509"
	"math/big"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

// What an offered CRL costs a node before (the number) and after (the
// signature and the rule) it spends a token, for a small CRL and for one
// near the 256 KiB cap.
func BenchmarkOfferedCRL(b *testing.B) {
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	cert, err := pki.NewCA(key, time.Now(), time.Hour)
	if err != nil {
		b.Fatal(err)
	}
	ca := pki.CA{Cert: cert, Key: key}
	for _, n := range []int{10, 5000} {
		var entries []x509.RevocationListEntry
		for i := 0; i < n; i++ {
			entries = append(entries, x509.RevocationListEntry{SerialNumber: new(big.Int).Lsh(big.NewInt(int64(i+1)), 120), RevocationTime: time.Now()})
		}
		held, _ := ca.NewCRL(entries, big.NewInt(1), time.Now())
		offered, _ := ca.NewCRL(entries, big.NewInt(2), time.Now())
		b.Logf("%d entries: %d bytes", n, len(offered))
		b.Run("number/"+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := OfferedCRLNewer(big.NewInt(1), offered); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run("verify/"+itoa(n), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if err := TakeOfferedCRL(string(held), offered, []*x509.Certificate{cert}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func itoa(n int) string { return big.NewInt(int64(n)).String() }
