package pki_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

// A CA's subject is what CASubject derives from its key id, so a TLS
// server's list of accepted CAs names it.
func TestCASubjectMatchesCA(t *testing.T) {
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.NewCA(key, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	kid, err := pki.ParseKeyIDHex(pki.KeyIDHex(ca.SubjectKeyId))
	if err != nil {
		t.Fatal(err)
	}
	subj, err := pki.CASubject(kid)
	if err != nil || !bytes.Equal(subj, ca.RawSubject) {
		t.Fatalf("CASubject: %x, %v; want the CA's %x", subj, err, ca.RawSubject)
	}
}
