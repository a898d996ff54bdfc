package idpolicy_test

import (
	"context"
	"crypto/x509"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

func newCA(t *testing.T) *pki.CA {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCA(key, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}

func who(t *testing.T, arn string) *idpolicy.Principal {
	t.Helper()
	p, err := idpolicy.Canonical(arn)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

var policy = &idpolicy.Policy{
	Fleet: "joblet", Version: 7, Issued: time.Now(), Expires: time.Now().Add(time.Hour),
	Rules: []idpolicy.Rule{
		{User: "arn:aws:iam::111122223333:user/dev/alice", Grant: pki.Developer},
		{User: "arn:aws:iam::111122223333:user/bob", UniqueID: "AIDABOB", Grant: pki.Reader},
		// Path given, matched by name: STS's answer has no path.
		{Role: "arn:aws:iam::111122223333:role/people/Admins", Session: "*@example.com", Grant: pki.Admin},
		{Role: "arn:aws:iam::111122223333:role/Ops", UniqueID: "AROAOPS", Grant: pki.Maintainer},
		{Account: "444455556666", Grant: pki.Reader},
		{Role: "arn:aws:iam::444455556666:role/Leads", Grant: pki.Maintainer},
	},
	Deny:     []string{"arn:aws:iam::111122223333:role/Admins#mallory@example.com"},
	Machines: []string{"arn:aws:iam::444455556666:role/joblet-node"},
}

func TestLoginPolicyMap(t *testing.T) {
	for _, c := range []struct {
		arn, uid string
		want     pki.Role // "" = refused
		name     string
	}{
		{"arn:aws:iam::111122223333:user/dev/alice", "AIDAALICE", pki.Developer, "arn:aws:iam::111122223333:user/dev/alice"},
		{"arn:aws:iam::111122223333:user/bob", "AIDABOB", pki.Reader, ""},
		// bob deleted and re-created: another unique ID.
		{"arn:aws:iam::111122223333:user/bob", "AIDABOB2", "", ""},
		{"arn:aws:sts::111122223333:assumed-role/Admins/carol@example.com", "AROAADM:carol@example.com", pki.Admin, "arn:aws:iam::111122223333:role/Admins#carol@example.com"},
		// A session name the pattern does not allow.
		{"arn:aws:sts::111122223333:assumed-role/Admins/carol", "AROAADM:carol", "", ""},
		// Denied at once, whatever rule matches.
		{"arn:aws:sts::111122223333:assumed-role/Admins/mallory@example.com", "AROAADM:mallory@example.com", "", ""},
		{"arn:aws:sts::111122223333:assumed-role/Ops/x", "AROAOPS:x", pki.Maintainer, ""},
		// Ops deleted and re-created with the same name.
		{"arn:aws:sts::111122223333:assumed-role/Ops/x", "AROANEW:x", "", ""},
		// An account-wide rule: the lowest role; a more specific rule wins
		// with a higher one.
		{"arn:aws:iam::444455556666:user/anyone", "AIDAX", pki.Reader, ""},
		{"arn:aws:sts::444455556666:assumed-role/Leads/dana", "AROAL:dana", pki.Maintainer, ""},
		// A machine's role, in an account a rule covers: never a person.
		{"arn:aws:sts::444455556666:assumed-role/joblet-node/i-0abc", "AROAN:i-0abc", "", ""},
		{"arn:aws:iam::444455556666:root", "444455556666", "", ""},
		{"arn:aws:iam::999999999999:user/alice", "AIDAZ", "", ""},
	} {
		got, err := policy.Map(who(t, c.arn), c.uid)
		if c.want == "" {
			if !errors.Is(err, idpolicy.ErrUnmapped) {
				t.Errorf("%s (%s): %+v %v, want refused", c.arn, c.uid, got, err)
			}
			continue
		}
		if err != nil || got.Role != c.want || (c.name != "" && got.Name != c.name) {
			t.Errorf("%s (%s): %+v %v, want %s", c.arn, c.uid, got, err, c.want)
		}
	}
}

func TestLoginPolicyRefusesUnsafeRules(t *testing.T) {
	for what, r := range map[string]idpolicy.Rule{
		"an account-wide rule above the lowest role": {Account: "111122223333", Grant: pki.Admin},
		"two subjects in one rule":                   {User: "arn:aws:iam::1:user/a", Role: "arn:aws:iam::1:role/b", Grant: pki.Reader},
		"a session pattern on a user":                {User: "arn:aws:iam::1:user/a", Session: "*", Grant: pki.Reader},
		"an assumed-role ARN as a user":              {User: "arn:aws:sts::1:assumed-role/a/b", Grant: pki.Reader},
		"a role that is not a role ARN":              {Role: "arn:aws:iam::1:user/a", Grant: pki.Reader},
		"no role":                                    {User: "arn:aws:iam::1:user/a", Grant: "root"},
	} {
		p := &idpolicy.Policy{Fleet: "joblet", Rules: []idpolicy.Rule{r}}
		if err := p.Check(); err == nil {
			t.Errorf("%s: accepted", what)
		}
	}
}

func TestLoginPolicySignedByTheRootOnly(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	root, other := newCA(t), newCA(t)
	signed, err := idpolicy.Sign(ctx, policy, root)
	if err != nil {
		t.Fatal(err)
	}
	roots := []*x509.Certificate{root.Cert}
	got, err := idpolicy.Verify(signed, "joblet", roots, nil, now)
	if err != nil || got.Version != 7 {
		t.Fatalf("the root's policy: %+v %v", got, err)
	}
	forged, _ := idpolicy.Sign(ctx, policy, other)
	tampered := strings.Replace(string(signed), `"payload": "`, `"payload": "e`, 1)
	trust, _ := pki.SignTrust(ctx, pki.NewTrustState("joblet", 1, roots, roots, nil, now), root)
	newer := *policy
	newer.Version = 9
	held, _ := idpolicy.Verify(mustSign(t, &newer, root), "joblet", roots, nil, now)
	for what, c := range map[string]struct {
		data  []byte
		fleet string
		held  *idpolicy.Policy
		now   time.Time
	}{
		"signed by another CA":                 {forged, "joblet", nil, now},
		"tampered":                             {[]byte(tampered), "joblet", nil, now},
		"the root's trust state, not a policy": {trust, "joblet", nil, now},
		"another fleet's":                      {signed, "joblet-staging", nil, now},
		"older than the one held":              {signed, "joblet", held, now},
		"expired":                              {signed, "joblet", nil, now.Add(2 * time.Hour)},
		"junk":                                 {[]byte("{}"), "joblet", nil, now},
	} {
		if p, err := idpolicy.Verify(c.data, c.fleet, roots, c.held, c.now); err == nil {
			t.Errorf("%s: taken (version %d)", what, p.Version)
		}
	}
}

func mustSign(t *testing.T, p *idpolicy.Policy, ca *pki.CA) []byte {
	t.Helper()
	b, err := idpolicy.Sign(context.Background(), p, ca)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A node's check: the role in a person's certificate must be one the
// policy gives that person (or lower), whatever the issuer signed; shared
// role certificates are refused for the roles people log in for.
func TestAllows(t *testing.T) {
	pol := *policy
	pol.RefuseShared = []pki.Role{pki.Admin}
	for _, c := range []struct {
		person string
		role   pki.Role
		ok     bool
	}{
		{"arn:aws:iam::111122223333:user/dev/alice", pki.Developer, true},
		{"arn:aws:iam::111122223333:user/dev/alice", pki.Reader, true},
		{"arn:aws:iam::111122223333:user/dev/alice", pki.Admin, false},
		{"arn:aws:iam::111122223333:role/Admins#carol@example.com", pki.Admin, true},
		{"arn:aws:iam::111122223333:role/Admins#carol", pki.Admin, false},
		{"arn:aws:iam::111122223333:role/Admins#mallory@example.com", pki.Reader, false},
		{"arn:aws:iam::444455556666:role/joblet-node#i-0abc", pki.Reader, false},
		{"arn:aws:iam::999999999999:user/eve", pki.Reader, false},
		{"arn:aws:iam::111122223333:role/Admins", pki.Admin, false}, // a role without a session is no person
		{"not an arn", pki.Reader, false},
		{"", pki.Developer, true}, // a shared developer certificate
		{"", pki.Admin, false},    // shared admin: refused by this policy
	} {
		err := pol.Allows(c.person, c.role)
		if (err == nil) != c.ok {
			t.Errorf("%q as %s: %v, want allowed %v", c.person, c.role, err, c.ok)
		}
	}
}
