// Package openssl runs the openssl command line as an independent verifier
// of what joblet writes, so tests do not only trust Go's own x509 code.
package openssl

import (
	"bytes"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Require fails the test when openssl is missing: it is a required test
// component (ARCHITECTURE.md), never a reason to skip.
func Require(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		t.Fatalf("openssl is required for this test and is not installed: %v", err)
	}
	return p
}

func write(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// Verify runs `openssl verify -x509_strict -purpose PURPOSE -CAfile ca
// [-untrusted chain] leaf` and fails the test unless openssl says OK.
// purpose: sslserver, sslclient.
func Verify(t testing.TB, caPEM, leafPEM []byte, purpose string) {
	t.Helper()
	out, err := run(t, caPEM, leafPEM, purpose)
	if err != nil || !strings.Contains(out, ": OK") {
		t.Fatalf("openssl verify (%s) failed: %v\n%s", purpose, err, out)
	}
}

// VerifyFails asserts openssl rejects leaf against ca and returns its output.
func VerifyFails(t testing.TB, caPEM, leafPEM []byte, purpose string) string {
	t.Helper()
	out, err := run(t, caPEM, leafPEM, purpose)
	if err == nil {
		t.Fatalf("openssl verify (%s) accepted a certificate it should refuse:\n%s", purpose, out)
	}
	return out
}

// run verifies leafPEM: a certificate, or a chain (leaf first, then the
// CAs that issued it, as a server sends it), whose CAs go to -untrusted.
func run(t testing.TB, caPEM, leafPEM []byte, purpose string) (string, error) {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	ca := write(t, dir, "ca.pem", caPEM)
	args := []string{"verify", "-x509_strict", "-purpose", purpose, "-CAfile", ca}
	leafBlock, rest := pem.Decode(leafPEM)
	if leafBlock != nil && len(bytes.TrimSpace(rest)) > 0 {
		args = append(args, "-untrusted", write(t, dir, "chain.pem", rest))
		leafPEM = pem.EncodeToMemory(leafBlock)
	}
	leaf := write(t, dir, "leaf.pem", leafPEM)
	out, err := exec.Command(bin, append(args, leaf)...).CombinedOutput()
	return string(out), err
}

// Text returns `openssl x509 -noout -text` of a PEM certificate.
func Text(t testing.TB, certPEM []byte) string {
	t.Helper()
	bin := Require(t)
	p := write(t, t.TempDir(), "c.pem", certPEM)
	out, err := exec.Command(bin, "x509", "-noout", "-text", "-in", p).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -text: %v\n%s", err, out)
	}
	return string(out)
}

// KeyMatchesCert checks with openssl that a PEM key and certificate share a
// public key.
func KeyMatchesCert(t testing.TB, keyPEM, certPEM []byte) {
	t.Helper()
	bin := Require(t)
	dir := t.TempDir()
	k := write(t, dir, "k.pem", keyPEM)
	c := write(t, dir, "c.pem", certPEM)
	kp, err := exec.Command(bin, "pkey", "-in", k, "-pubout").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl pkey: %v\n%s", err, kp)
	}
	cp, err := exec.Command(bin, "x509", "-in", c, "-noout", "-pubkey").CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509 -pubkey: %v\n%s", err, cp)
	}
	if string(kp) != string(cp) {
		t.Fatalf("openssl: the key's public key differs from the certificate's")
	}
}
