package idpolicy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

// An attacker review: the deny and machine lists fail open on forms of
// the same identity that the rules themselves accept or that an operator
// copies from CloudTrail. Each case is a policy Check accepts and a person
// it should refuse (or a Check that refuses the entry: either is a fix).
func TestReviewDenyAndMachinesFailOpen(t *testing.T) {
	base := func(deny, machines []string) *idpolicy.Policy {
		return &idpolicy.Policy{
			Fleet: "joblet", Version: 1, Issued: time.Now(), Expires: time.Now().Add(time.Hour),
			Rules: []idpolicy.Rule{
				// A role rule with its path, as the rules allow.
				{Role: "arn:aws:iam::111122223333:role/people/Admins", Session: "*@example.com", Grant: pki.Admin},
				{User: "arn:aws:iam::111122223333:user/dev/alice", Grant: pki.Developer},
				{Account: "444455556666", Grant: pki.Reader},
			},
			Deny: deny, Machines: machines,
		}
	}
	for _, c := range []struct {
		what     string
		pol      *idpolicy.Policy
		arn, uid string
	}{
		{"a deny with the role's path (the form its rule is written in)",
			base([]string{"arn:aws:iam::111122223333:role/people/Admins#mallory@example.com"}, nil),
			"arn:aws:sts::111122223333:assumed-role/Admins/mallory@example.com", "AROAADM:mallory@example.com"},
		{"a deny with the session's STS ARN (as CloudTrail and GetCallerIdentity show it)",
			base([]string{"arn:aws:sts::111122223333:assumed-role/Admins/mallory@example.com"}, nil),
			"arn:aws:sts::111122223333:assumed-role/Admins/mallory@example.com", "AROAADM:mallory@example.com"},
		{"a deny of a user by account and name, without its path (IAM user names are unique per account)",
			base([]string{"arn:aws:iam::111122223333:user/alice"}, nil),
			"arn:aws:iam::111122223333:user/dev/alice", "AIDAALICE"},
		{"a machine role listed in another case (IAM role names are unique case-insensitively)",
			base(nil, []string{"arn:aws:iam::444455556666:role/joblet-node"}),
			"arn:aws:sts::444455556666:assumed-role/Joblet-Node/i-0abc", "AROAN:i-0abc"},
		{"a role rule matched in another partition (awsident forwards a proof signed for cn-north-1 to STS in China; 12-digit account IDs are not unique across partitions)",
			base(nil, nil),
			"arn:aws-cn:sts::111122223333:assumed-role/Admins/carol@example.com", "AROAADM:carol@example.com"},
		{"an account-wide rule matched in another partition",
			base(nil, nil),
			"arn:aws-us-gov:iam::444455556666:user/anyone", "AIDAX"},
	} {
		if err := c.pol.Check(); err != nil {
			continue // refused at signing: fine
		}
		got, err := c.pol.Map(who(t, c.arn), c.uid)
		if !errors.Is(err, idpolicy.ErrUnmapped) {
			t.Errorf("%s: Check accepts the policy and %s is mapped to %s", c.what, c.arn, got.Role)
		}
	}
}
