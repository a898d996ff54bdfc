package test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// `certs status` compares the root's KMS key with the root certificate
// (kms:GetPublicKey against ca-cert, in moto), and the node-issuing key
// with the node-issuing CAs the signed trust state lists: a store write
// that swaps either (ca-kms-key naming another key, a key of one's own in
// node-ca-key) is Broken, exit 2, naming the secret and the fix; `certs
// node-ca` then replaces the planted key instead of certifying it.
func TestStatusComparesTheRootKMSKeyAndTheNodeKey(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	arn, other := kmsKey(t, "ECC_NIST_P256"), kmsKey(t, "ECC_NIST_P256")
	opHome := t.TempDir()
	opEnv := harness.Env(append(harness.AWSEnv(moto.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+opHome, "JOBLET_CA_KMS_KEY_ID="+arn)...)
	harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t)), "--out", filepath.Join(opHome, "configs"))
	status := func() harness.Result { return harness.Run(t, opEnv, joblet, "certs", "status") }
	if r := status(); r.Code != 0 || !strings.Contains(r.Stdout, "CA key: AWS KMS key "+arn) || !strings.Contains(r.Stdout, "all good") {
		t.Fatalf("a healthy KMS fleet: %s", r)
	}

	st := kmsStore(t)
	if err := st.Put(t.Context(), kmsNames.CAKMSKey(), other); err != nil {
		t.Fatal(err)
	}
	r := status()
	if r.Code != 2 || !strings.Contains(r.Stdout, "joblet/ca-kms-key names KMS key "+other+", whose public key (kms:GetPublicKey) is not the one joblet/ca-cert") {
		t.Fatalf("ca-kms-key naming another KMS key: %s", r)
	}
	t.Logf("ca-kms-key naming another key: exit %d: %s", r.Code, problemLine(r.Stdout, "ca-kms-key names"))
	if err := st.Put(t.Context(), kmsNames.CAKMSKey(), arn); err != nil {
		t.Fatal(err)
	}
	if r := status(); r.Code != 0 {
		t.Fatalf("ca-kms-key put back: %s", r)
	}

	k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	enc, _ := pki.EncodeKey(k)
	if err := st.Put(t.Context(), kmsNames.NodeCAKey(), string(enc)); err != nil {
		t.Fatal(err)
	}
	r = status()
	if r.Code != 2 || !strings.Contains(r.Stdout, "joblet/node-ca-key holds a key that no node-issuing CA the signed trust state") ||
		!strings.Contains(r.Stdout, "`joblet certs node-ca --rekey`") || strings.Contains(r.Stdout, "keeps the key") {
		t.Fatalf("a planted node-issuing key: %s", r)
	}
	t.Logf("a planted node-issuing key: exit %d: %s", r.Code, problemLine(r.Stdout, "node-ca-key holds"))
	r = harness.MustRun(t, opEnv, joblet, "certs", "node-ca")
	if !strings.Contains(r.Stdout, "never certified, replaced by a new key") {
		t.Fatalf("node-ca with a planted key:\n%s", r.Stdout)
	}
	vals, err := st.Get(t.Context(), []string{kmsNames.NodeCACert(), kmsNames.NodeCAKey(), kmsNames.Bundle()})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.ParseCert([]byte(vals[kmsNames.NodeCACert()]))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey([]byte(vals[kmsNames.NodeCAKey()]))
	if err != nil || pki.MatchesKey(cert, key) != nil || pki.MatchesKey(cert, k) == nil {
		t.Fatalf("after node-ca: the pair is apart or the planted key's (%v)", err)
	}
	doc, err := pki.PeekTrust([]byte(vals[kmsNames.Bundle()]), "joblet")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range doc.NodeCACerts() {
		if pki.MatchesKey(c, k) == nil {
			t.Fatal("the signed trust state lists a node-issuing CA for the planted key")
		}
	}
	if r := status(); r.Code != 0 {
		t.Fatalf("after node-ca: %s", r)
	}
}

// problemLine is the first line of out that contains s.
func problemLine(out, s string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, s) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}
