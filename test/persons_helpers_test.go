package test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// Persons (issue 26) for tests against a running node: the identity policy
// signed by the operator's command, and persons' rnx configs from a
// user-issuing CA under the fleet's root (the issuer's, here made by the
// test from the root's key in the store).

// signIdentityPolicy signs policy (JSON) with `joblet certs identity-policy
// sign` and waits for the node at home to hold it (its next refresh).
func signIdentityPolicy(t *testing.T, env []string, joblet, home, policy string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "policy.json")
	if err := os.WriteFile(file, []byte(policy), 0o600); err != nil {
		t.Fatal(err)
	}
	out := harness.MustRun(t, env, joblet, "certs", "identity-policy", "sign", "--file", file)
	if !strings.Contains(out.Stdout, "identity policy version") {
		t.Fatalf("sign: %s", out)
	}
	harness.Eventually(t, 20*time.Second, "the node holding the policy", func() error {
		if serverConfig(t, home).Security.IdentityPolicy == "" {
			return errors.New("not yet")
		}
		return nil
	})
}

// userCA is a user-issuing CA under the root of the fleet in moto's store
// at prefix.
type userCA struct{ *pki.CA }

func newUserCA(t *testing.T, prefix string) userCA {
	t.Helper()
	vals := readStore(t, prefix)
	rootCert, err := pki.ParseCert([]byte(vals[prefix+"/ca-cert"]))
	if err != nil {
		t.Fatal(err)
	}
	rootKey, err := pki.ParseKey([]byte(vals[prefix+"/ca-key"]))
	if err != nil {
		t.Fatal(err)
	}
	root := &pki.CA{Cert: rootCert, Key: rootKey}
	ukey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	uca, err := root.IssueUserCA(ukey.Public(), time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return userCA{&pki.CA{Cert: uca.Cert, Key: ukey}}
}

// personConfig writes an rnx config for the person arn with role: base's
// (an rnx config file's) entries, each with the person's certificate (and
// the user CA's, its chain) and key.
func (u userCA) personConfig(t *testing.T, base, arn string, role pki.Role) string {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := u.IssuePerson(key.Public(), pki.Person{ARN: arn, Role: role}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	rc, err := config.LoadRnx(base)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	for name, n := range rc.Nodes {
		n.Cert, n.Key = string(pki.EncodeCert(is.Cert))+string(pki.EncodeCert(u.Cert)), string(keyPEM)
		rc.Nodes[name] = n
	}
	p := filepath.Join(t.TempDir(), "person.yml")
	b, err := rc.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
