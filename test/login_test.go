package test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// Issue 26's node side, against moto and a running node: the operator signs
// an identity policy (`joblet certs identity-policy sign`), the node takes
// it at its next refresh, and from then on accepts a person's certificate
// only for the role the policy gives that person, whatever the user-issuing
// CA signed, and refuses the shared certificates of the roles the policy
// says people log in for.
func TestLoginPolicyHoldsOnNodes(t *testing.T) {
	moto.Reset(t)
	joblet, rnx := harness.Bins(t)
	home, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	admin := filepath.Join(home, "config", "rnx-config.yml")
	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(`{"rules":[{"user":"arn:aws:iam::123456789012:user/alice","grant":"developer"}],"refuseShared":["developer"]}`), 0o600)
	out := harness.MustRun(t, env, joblet, "certs", "identity-policy", "sign", "--file", policy)
	if !strings.Contains(out.Stdout, "identity policy version") {
		t.Fatalf("sign: %s", out)
	}
	harness.Eventually(t, 20*time.Second, "the node holding the policy", func() error {
		if serverConfig(t, home).Security.IdentityPolicy == "" {
			return errors.New("not yet")
		}
		return nil
	})

	// A user-issuing CA under the fleet's root (the issuer's, here made by
	// the test from the root's key in the store), and persons' configs.
	vals := readStore(t, "joblet")
	rootCert, _ := pki.ParseCert([]byte(vals["joblet/ca-cert"]))
	rootKey, err := pki.ParseKey([]byte(vals["joblet/ca-key"]))
	if err != nil {
		t.Fatal(err)
	}
	root := &pki.CA{Cert: rootCert, Key: rootKey}
	ukey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	uca, err := root.IssueUserCA(ukey.Public(), time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	user := &pki.CA{Cert: uca.Cert, Key: ukey}
	person := func(arn string, role pki.Role) string {
		key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		is, err := user.IssuePerson(key.Public(), pki.Person{ARN: arn, Role: role}, time.Now(), time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		rc, err := config.LoadRnx(admin)
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodeKey(key)
		for name, n := range rc.Nodes {
			n.Cert, n.Key = string(pki.EncodeCert(is.Cert))+string(pki.EncodeCert(uca.Cert)), string(keyPEM)
			rc.Nodes[name] = n
		}
		p := filepath.Join(t.TempDir(), "person.yml")
		b, _ := rc.Marshal()
		os.WriteFile(p, b, 0o600)
		return p
	}
	for _, c := range []struct {
		what, cfg string
		ok        bool
		says      string
	}{
		{"alice as developer", person("arn:aws:iam::123456789012:user/alice", pki.Developer), true, ""},
		{"alice as admin", person("arn:aws:iam::123456789012:user/alice", pki.Admin), false, "gives arn:aws:iam::123456789012:user/alice the role developer"},
		{"mallory", person("arn:aws:iam::123456789012:user/mallory", pki.Reader), false, "no rule"},
		{"the shared developer config", filepath.Join(home, "config", "rnx-config-developer.yml"), false, "refuses shared developer"},
		{"the shared admin config", admin, true, ""},
	} {
		r := harness.Run(t, harness.Env(), rnx, "--config", c.cfg, "job", "list")
		if (r.Code == 0) != c.ok || !strings.Contains(r.Stderr, c.says) {
			t.Errorf("%s: %s", c.what, fmt.Sprint(r))
		}
	}
}
