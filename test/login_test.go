package test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

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
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	home, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	admin := filepath.Join(home, "config", "rnx-config.yml")
	signIdentityPolicy(t, env, joblet, home, `{"rules":[{"user":"arn:aws:iam::123456789012:user/alice","grant":"developer"}],"refuseShared":["developer"]}`)
	user := newUserCA(t, "joblet")
	person := func(arn string, role pki.Role) string { return user.personConfig(t, admin, arn, role) }
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
