package certs

import (
	"crypto/x509"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

// A newer CRL that no longer lists a serial the held one revokes is refused
// while the held one's CA is still trusted, and taken once that CA is gone
// (a CA replaced with FORCE_REGENERATE takes its revocations with it).
func TestNewestCRLRefusesDroppedSerials(t *testing.T) {
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	cert, _ := pki.NewCA(key, time.Now(), time.Hour)
	ca := &pki.CA{Cert: cert, Key: key}
	other, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	otherCert, _ := pki.NewCA(other, time.Now(), time.Hour)
	crl := func(number int64, serials ...int64) string {
		var es []x509.RevocationListEntry
		for _, s := range serials {
			es = append(es, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
		}
		b, err := ca.NewCRL(es, big.NewInt(number), time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	held := crl(5, 1, 2)
	if keep, problem := newestCRL(held, crl(9, 1, 3), nil, "p/crl", []*x509.Certificate{cert}); keep != held || !strings.Contains(problem, "no longer lists 02") {
		t.Fatalf("dropped serial: kept the new one (%v), problem %q", keep != held, problem)
	}
	if keep, problem := newestCRL(held, crl(9, 1, 2, 3), nil, "p/crl", []*x509.Certificate{cert}); keep == held || problem != "" {
		t.Fatalf("a superset was not taken: %q", problem)
	}
	if keep, problem := newestCRL(held, crl(9), nil, "p/crl", []*x509.Certificate{otherCert}); keep == held || problem != "" {
		t.Fatalf("the held CRL's CA is no longer trusted, yet the new CRL was refused: %q", problem)
	}
}
