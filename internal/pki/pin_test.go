package pki_test

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/pki"
)

func TestParsePin(t *testing.T) {
	ca := newCA(t, pki.ECDSAP256, pki.DefaultCALifetime)
	sum := sha256.Sum256(ca.Cert.Raw)
	h := hex.EncodeToString(sum[:])
	var pairs []string
	for i := 0; i < len(h); i += 2 {
		pairs = append(pairs, h[i:i+2])
	}
	colons := strings.Join(pairs, ":")
	for _, in := range []string{h, strings.ToUpper(h), colons, strings.ToUpper(colons), "sha256:" + h, "SHA256:" + strings.ToUpper(colons),
		"  sha256:" + h + "\n", "sha256 Fingerprint=" + strings.ToUpper(colons), "SHA256 Fingerprint=" + colons, pki.PinOf(ca.Cert).String()} {
		p, err := pki.ParsePin(in)
		if err != nil || !p.Matches(ca.Cert) {
			t.Errorf("%q: %v, matches %v", in, err, p.Matches(ca.Cert))
		}
	}
	if got := pki.PinOf(ca.Cert).String(); got != "sha256:"+h {
		t.Errorf("String() = %q", got)
	}
	sha1 := h[:40]
	for _, in := range []string{"", "sha256:", h[:62], h + "00", sha1, colons[:len(colons)-1], h[:2] + ":" + h[2:], "sha1:" + h, "zz" + h[2:], "sha256:sha256:" + h, strings.Replace(colons, ":", "-", -1)} {
		if _, err := pki.ParsePin(in); err == nil || !strings.Contains(err.Error(), "64 hex digits") {
			t.Errorf("%q accepted or unexplained: %v", in, err)
		}
	}
}

func FuzzParsePin(f *testing.F) {
	for _, s := range []string{"sha256:" + strings.Repeat("ab", 32), strings.Repeat("AB:", 31) + "AB", "sha256 Fingerprint=00", ":", "sha256:"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := pki.ParsePin(s)
		if err != nil {
			return
		}
		// Whatever was accepted names exactly the 32 bytes it printed as,
		// and reads back to itself.
		back, err := pki.ParsePin(p.String())
		if err != nil || back != p {
			t.Fatalf("%q: accepted as %s, which reads back as %s (%v)", s, p, back, err)
		}
		hexOnly := strings.Map(func(r rune) rune {
			if strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return r
			}
			return -1
		}, s)
		if !strings.HasSuffix(strings.ToLower(hexOnly), fmt.Sprintf("%x", p[:])) {
			t.Fatalf("%q accepted as %s: not its digits", s, p)
		}
	})
}
