package certs_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
)

// Stored-secret vectors: testdata/stored/base holds a whole, valid shared
// store (a CA valid for a century, so the files never age out); each
// testdata/stored/<outcome>_<case>/ holds the secrets that spoil it
// (<secret>.pem replaces a secret, <secret>.deleted removes it) and want.txt,
// the phrases the error must contain. Regenerate them with
// JOBLET_UPDATE_VECTORS=1 go test ./internal/certs -run TestStoredSecretVectors.
const vectorDir = "testdata/stored"

// secretFile maps a secret name to its vector file name and back.
func secretFile(name string) string { return strings.TrimPrefix(name, names.Prefix+"/") }

func TestStoredSecretVectors(t *testing.T) {
	if os.Getenv("JOBLET_UPDATE_VECTORS") == "1" {
		writeVectors(t)
	}
	base := readVectorSecrets(t, filepath.Join(vectorDir, "base"))
	if len(base) != len(names.All()) {
		t.Fatalf("testdata base store has %d secrets, want %d", len(base), len(names.All()))
	}
	dirs, err := os.ReadDir(vectorDir)
	if err != nil {
		t.Fatal(err)
	}
	ran := 0
	for _, d := range dirs {
		if !d.IsDir() || d.Name() == "base" {
			continue
		}
		outcome, _, _ := strings.Cut(d.Name(), "_")
		if outcome != "refuse" {
			t.Fatalf("vector %s: the name must start with its expected outcome (refuse_)", d.Name())
		}
		ran++
		t.Run(d.Name(), func(t *testing.T) {
			dir := filepath.Join(vectorDir, d.Name())
			st := storetest.NewMemoryStore()
			for k, v := range base {
				st.Set(k, v)
			}
			// A node that joined before the store was spoilt: its files
			// must survive the refusal byte for byte.
			o := opts(t, st)
			bootstrap(t, o)
			files := snapshot(t, o.Home)
			spoilt := applyVector(t, st, dir)
			want := readWant(t, dir)
			storeBefore, _ := st.Get(context.Background(), names.All())
			_, err := boot(context.Background(), o)
			if !errors.Is(err, certs.ErrInconsistentStore) {
				t.Fatalf("err = %v, want ErrInconsistentStore", err)
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			sameFiles(t, files, snapshot(t, o.Home))
			storeAfter, _ := st.Get(context.Background(), names.All())
			if len(storeAfter) != len(storeBefore) {
				t.Fatalf("store changed: %d secrets, was %d", len(storeAfter), len(storeBefore))
			}
			for k, v := range storeBefore {
				if storeAfter[k] != v {
					t.Fatalf("store secret %s was replaced", k)
				}
			}
			reliability.Record(t, "bad input", "stored secrets: "+strings.ReplaceAll(strings.TrimPrefix(d.Name(), "refuse_"), "_", " ")+" ("+strings.Join(spoilt, ", ")+")",
				"bootstrap refused: "+firstSentence(err)+"; no secret or file written")
		})
	}
	if ran < 15 {
		t.Fatalf("only %d stored-secret vectors in %s", ran, vectorDir)
	}
}

// firstSentence keeps an error short for the reliability table.
func firstSentence(err error) string {
	s := strings.TrimPrefix(err.Error(), certs.ErrInconsistentStore.Error()+": ")
	if i := strings.Index(s, ". "); i > 0 {
		s = s[:i]
	}
	return s
}

func readVectorSecrets(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	files, err := filepath.Glob(filepath.Join(dir, "*.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m[names.Prefix+"/"+strings.TrimSuffix(filepath.Base(f), ".pem")] = string(b)
	}
	return m
}

// applyVector spoils the store as the vector says and names what it spoilt.
func applyVector(t *testing.T, st *storetest.MemoryStore, dir string) []string {
	t.Helper()
	var spoilt []string
	for k, v := range readVectorSecrets(t, dir) {
		st.Set(k, v)
		spoilt = append(spoilt, k)
	}
	deleted, _ := filepath.Glob(filepath.Join(dir, "*.deleted"))
	for _, f := range deleted {
		name := names.Prefix + "/" + strings.TrimSuffix(filepath.Base(f), ".deleted")
		st.Delete(name)
		spoilt = append(spoilt, name+" (deleted)")
	}
	if len(spoilt) == 0 {
		t.Fatalf("vector %s changes no secret", dir)
	}
	sort.Strings(spoilt)
	return spoilt
}

func readWant(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "want.txt"))
	if err != nil {
		t.Fatalf("vector %s has no want.txt: %v", dir, err)
	}
	var want []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimSpace(l); l != "" {
			want = append(want, l)
		}
	}
	if len(want) == 0 {
		t.Fatalf("vector %s: want.txt is empty", dir)
	}
	return want
}

// writeVectors regenerates testdata/stored from scratch.
func writeVectors(t *testing.T) {
	t.Helper()
	const century = 100 * 365 * 24 * time.Hour
	os.RemoveAll(vectorDir)
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	o.CALifetime, o.ClientLifetime, o.ServerLifetime = century, century, 24*time.Hour
	bootstrap(t, o)
	base, err := st.Get(context.Background(), names.All())
	if err != nil {
		t.Fatal(err)
	}
	write := func(dir, file, content string) {
		t.Helper()
		p := filepath.Join(vectorDir, dir, file)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for k, v := range base {
		write("base", secretFile(k)+".pem", v)
	}
	vector := func(name string, secrets map[string]string, want ...string) {
		for k, v := range secrets {
			if v == "" {
				write(name, secretFile(k)+".deleted", "")
			} else {
				write(name, secretFile(k)+".pem", v)
			}
		}
		write(name, "want.txt", strings.Join(want, "\n")+"\n")
	}
	caKey, err := pki.ParseKey([]byte(base[names.CAKey()]))
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := pki.ParseCert([]byte(base[names.CACert()]))
	if err != nil {
		t.Fatal(err)
	}
	newKey := func() (crypto.Signer, string) {
		k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		p, _ := pki.EncodeKey(k)
		return k, string(p)
	}

	for _, n := range names.All() {
		if n == names.Bundle() || n == names.CRL() {
			continue
		}
		kind, body := "certificate", "-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
		if strings.Contains(n, "-key") {
			kind, body = "private key", "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n"
		}
		vector("refuse_corrupt_pem_"+secretFile(n), map[string]string{n: body}, n+" does not hold a usable "+kind, "Restore its previous version")
		half := base[n][:len(base[n])/2]
		vector("refuse_truncated_pem_"+secretFile(n), map[string]string{n: half}, n+" does not hold a usable "+kind)
	}
	vector("refuse_ca-cert_without_ca-key", map[string]string{names.CAKey(): ""}, names.CACert()+" exists but "+names.CAKey()+" does not")

	// Another CA's certificate over our key.
	otherKey, _ := newKey()
	other, _ := pki.NewCA(otherKey, time.Now(), century)
	vector("refuse_ca-cert_not_matching_ca-key", map[string]string{names.CACert(): string(pki.EncodeCert(other))},
		names.CACert()+" is not the certificate of "+names.CAKey())

	// The reader's certificate over the developer's key.
	vector("refuse_client-cert-reader_not_matching_its_key", map[string]string{names.ClientKey(pki.Reader): base[names.ClientKey(pki.Developer)]},
		names.ClientCert(pki.Reader)+" is not the certificate of "+names.ClientKey(pki.Reader))

	// A CA whose validity ended in 2001 (its own key, so it matches).
	oldKey, oldKeyPEM := newKey()
	expired, _ := pki.NewCA(oldKey, time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), 365*24*time.Hour)
	vector("refuse_expired_ca", map[string]string{names.CACert(): string(pki.EncodeCert(expired)), names.CAKey(): oldKeyPEM},
		names.CACert(), "expired", "FORCE_REGENERATE=true")

	// A leaf certificate and its key stored as the CA.
	vector("refuse_ca-cert_without_ca_true", map[string]string{names.CACert(): base[names.ClientCert(pki.Reader)], names.CAKey(): base[names.ClientKey(pki.Reader)]},
		names.CACert(), "not a CA")

	// A client certificate from our CA with an OU that is no joblet role.
	unknownOU := issueWithOU(t, caCert, caKey, base[names.ClientKey(pki.Reader)], "auditor", century)
	vector("refuse_client-cert-reader_unknown_ou", map[string]string{names.ClientCert(pki.Reader): unknownOU},
		names.ClientCert(pki.Reader), `no joblet role in its OU ["auditor"]`)

	// The admin slot holding the reader's pair.
	vector("refuse_client-cert_wrong_role", map[string]string{names.ClientCert(pki.Admin): base[names.ClientCert(pki.Reader)], names.ClientKey(pki.Admin): base[names.ClientKey(pki.Reader)]},
		names.ClientCert(pki.Admin), `role "reader", not "admin"`)

	// A client pair signed by a different CA.
	otherCA := &pki.CA{Cert: other, Key: otherKey}
	ck, ckPEM := newKey()
	foreign, err := otherCA.IssueClient(ck.Public(), pki.Developer, time.Now(), century)
	if err != nil {
		t.Fatal(err)
	}
	vector("refuse_client-cert-developer_from_another_ca", map[string]string{names.ClientCert(pki.Developer): string(pki.EncodeCert(foreign.Cert)), names.ClientKey(pki.Developer): ckPEM},
		names.ClientCert(pki.Developer), "does not verify against the CA")
	// A node-issuing CA that could sign clients (no usage limit), for the
	// stored node-issuing key: refused, never used.
	nodeKey, err := pki.ParseKey([]byte(base[names.NodeCAKey()]))
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := pki.NewSerial()
	loose := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{Organization: []string{"Joblet"}, CommonName: pki.NodeCACommonName},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(century - 24*time.Hour), IsCA: true, BasicConstraintsValid: true,
		MaxPathLen: 0, MaxPathLenZero: true, KeyUsage: x509.KeyUsageCertSign, AuthorityKeyId: caCert.SubjectKeyId}
	der, err := x509.CreateCertificate(rand.Reader, loose, caCert, nodeKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	looseCert, _ := x509.ParseCertificate(der)
	vector("refuse_node-ca-cert_without_usage_limit", map[string]string{names.NodeCACert(): string(pki.EncodeCert(looseCert))},
		names.NodeCACert(), "not limited to server authentication")

	// A node-issuing CA of another root, with its key.
	onk, onkPEM := newKey()
	otherNode, err := otherCA.IssueNodeCA(onk.Public(), time.Now(), century, pki.DefaultNodeConstraints())
	if err != nil {
		t.Fatal(err)
	}
	vector("refuse_node-ca-cert_from_another_ca", map[string]string{names.NodeCACert(): string(pki.EncodeCert(otherNode.Cert)), names.NodeCAKey(): onkPEM},
		names.NodeCACert(), "not signed by the fleet's CA")
	t.Logf("wrote %s", vectorDir)
}

// issueWithOU signs a client certificate with an arbitrary OU, something
// pki refuses to do.
func issueWithOU(t *testing.T, ca *x509.Certificate, caKey any, keyPEM, ou string, life time.Duration) string {
	t.Helper()
	k, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := pki.NewSerial()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{Organization: []string{"Joblet"}, OrganizationalUnit: []string{ou}, CommonName: ou + "-client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(life - 24*time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, k.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return string(pki.EncodeCert(c))
}
