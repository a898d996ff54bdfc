package awsident

import (
	"fmt"
	"strings"
)

// Principal is an identity STS answered with, canonicalised: an assumed
// role's session becomes the role (by name: STS's answer carries no path)
// and its session name, so a mapping names roles as IAM does.
type Principal struct {
	Partition, Account string
	// Kind is "user", "role" (an assumed role's session), "root" or
	// "federated-user".
	Kind string
	// Name is the user's or role's name (for a user, with its path), or
	// the federated user's.
	Name string
	// Session is an assumed role's session name.
	Session string
	// ARN is the canonical ARN: arn:PARTITION:iam::ACCOUNT:user/PATH/NAME,
	// :role/NAME (the path unknown), :root, or the federated user's STS
	// ARN.
	ARN string
}

// Canonical parses an ARN from GetCallerIdentity.
func Canonical(arn string) (*Principal, error) {
	parts := strings.SplitN(arn, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[4] == "" {
		return nil, fmt.Errorf("%q is not an ARN", arn)
	}
	p := &Principal{Partition: parts[1], Account: parts[4]}
	switch service, res := parts[2], parts[5]; {
	case service == "iam" && res == "root":
		p.Kind, p.ARN = "root", arn
	case service == "iam" && strings.HasPrefix(res, "user/"):
		p.Kind, p.Name, p.ARN = "user", strings.TrimPrefix(res, "user/"), arn
	case service == "sts" && strings.HasPrefix(res, "assumed-role/"):
		role, session, ok := strings.Cut(strings.TrimPrefix(res, "assumed-role/"), "/")
		if !ok || role == "" || session == "" || strings.Contains(session, "/") {
			return nil, fmt.Errorf("%q: an assumed-role ARN is assumed-role/ROLE/SESSION", arn)
		}
		p.Kind, p.Name, p.Session = "role", role, session
		p.ARN = fmt.Sprintf("arn:%s:iam::%s:role/%s", p.Partition, p.Account, role)
	case service == "sts" && strings.HasPrefix(res, "federated-user/"):
		p.Kind, p.Name, p.ARN = "federated-user", strings.TrimPrefix(res, "federated-user/"), arn
	default:
		return nil, fmt.Errorf("%q: not a user, an assumed role, a federated user or an account root", arn)
	}
	if p.Name == "" && p.Kind != "root" {
		return nil, fmt.Errorf("%q names no %s", arn, p.Kind)
	}
	return p, nil
}

// String is the readable name: user NAME, role NAME (session S), ...
func (p *Principal) String() string {
	if p.Session != "" {
		return fmt.Sprintf("%s %s (session %s) in %s", p.Kind, p.Name, p.Session, p.Account)
	}
	return fmt.Sprintf("%s %s in %s", p.Kind, p.Name, p.Account)
}
