// Package idpolicy is the fleet's identity policy: which AWS identities
// (people) get which role, signed by the root like the trust state, so a
// store write or a compromised issuer cannot name anyone the operator did
// not. The issuer maps a caller with it before issuing; a node checks the
// same mapping before it accepts a person's certificate.
//
// The pitfalls it is built against (Vault's AWS auth and
// aws-iam-authenticator met them):
//   - assumed-role ARNs carry no role path: roles are matched by account and
//     name (IAM role names are unique in an account, whatever the path);
//   - a role deleted and re-created with the same name is another role: a
//     rule may pin its unique ID (AROA...), which changes on re-creation;
//   - a role's session name is chosen by whoever assumes it: a session
//     pattern only narrows a rule, the person is always the role's ARN
//     plus the session, never a name taken from a template;
//   - machines never become people: the roles listed as machines (nodes,
//     the issuer, a rotation function) are refused whatever rule matches;
//   - a rule for a whole account grants at most the lowest role.
package idpolicy

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/awsident"
	"github.com/ehsaniara/joblet/internal/pki"
)

// PayloadType names the signed payload: a root's signature on a policy is
// valid as nothing else (not as a trust state).
const PayloadType = "application/vnd.joblet.identity-policy.v1+json"

// MaxSize bounds what a reader parses.
const MaxSize = 256 << 10

// ErrUnmapped: no rule gives the identity a role (or a deny or machine
// entry refuses it).
var ErrUnmapped = errors.New("the identity policy gives this identity no role")

// Policy is what the root signs.
type Policy struct {
	// Fleet is the store prefix: a fleet's policy is never another's.
	Fleet   string    `json:"fleet"`
	Version uint64    `json:"version"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	Rules   []Rule    `json:"rules"`
	// Deny are people cut off at once: canonical ARNs (a user's, or a
	// role's with "#SESSION" for one session), refused whatever rule
	// matches.
	Deny []string `json:"deny,omitempty"`
	// Machines are the IAM roles of machines (nodes, the issuer, a
	// rotation function), as role ARNs: never mapped to a person.
	Machines []string `json:"machines,omitempty"`
	// RefuseShared are the roles whose shared role certificates (the
	// rnx-config-ROLE.yml files, naming no person) nodes refuse: the roles
	// people log in for. Automation and break-glass keep the others.
	RefuseShared []pki.Role `json:"refuseShared,omitempty"`
}

// Rule maps identities to a role. Exactly one of User, Role, Account.
type Rule struct {
	// User is an IAM user's ARN (arn:aws:iam::ACCOUNT:user/PATH/NAME).
	User string `json:"user,omitempty"`
	// Role is an IAM role's ARN; its path, if given, is ignored (STS does
	// not say it). Session narrows it to sessions whose name matches the
	// pattern (path.Match syntax: "*@example.com"); only safe where the
	// role's trust policy fixes the session name (IAM Identity Center
	// does: the user's name).
	Role    string `json:"role,omitempty"`
	Session string `json:"session,omitempty"`
	// Account is a whole account: every user and role session in it. It
	// grants at most the lowest role, and needs the policy's machines
	// listed (an account rule would otherwise map the nodes' own role).
	Account string `json:"account,omitempty"`
	// Partition is an account rule's AWS partition (default aws): account
	// IDs of aws, aws-cn and aws-us-gov are separate namespaces.
	Partition string `json:"partition,omitempty"`
	// UniqueID pins the user's (AIDA...) or role's (AROA...) unique ID: a
	// user or role deleted and re-created with the same name no longer
	// matches.
	UniqueID string `json:"uniqueId,omitempty"`
	// Grant is the role.
	Grant pki.Role `json:"grant"`
}

// Check says what is wrong with p, or nil: a policy the signer refuses to
// sign and a reader refuses to take.
func (p *Policy) Check() error {
	if p.Fleet == "" {
		return errors.New("the identity policy names no fleet")
	}
	for i, r := range p.Rules {
		n := 0
		for _, s := range []string{r.User, r.Role, r.Account} {
			if s != "" {
				n++
			}
		}
		if n != 1 {
			return fmt.Errorf("rule %d: give exactly one of user, role, account", i+1)
		}
		if _, err := pki.ParseRole(string(r.Grant)); err != nil {
			return fmt.Errorf("rule %d: %w", i+1, err)
		}
		if r.User != "" {
			if pr, err := awsident.Canonical(r.User); err != nil || pr.Kind != "user" {
				return fmt.Errorf("rule %d: user %q is not an IAM user's ARN", i+1, r.User)
			}
		}
		if r.Role != "" {
			if _, _, err := roleName(r.Role); err != nil {
				return fmt.Errorf("rule %d: %w", i+1, err)
			}
			if r.Session != "" {
				if _, err := path.Match(r.Session, ""); err != nil {
					return fmt.Errorf("rule %d: session pattern %q: %w", i+1, r.Session, err)
				}
			}
		} else if r.Session != "" {
			return fmt.Errorf("rule %d: a session pattern narrows a role rule only", i+1)
		}
		if r.Account != "" && r.Grant != lowest {
			return fmt.Errorf("rule %d: a rule for the whole account %s grants at most %s, not %s", i+1, r.Account, lowest, r.Grant)
		}
		if r.Account != "" && len(p.Machines) == 0 {
			return fmt.Errorf("rule %d: a rule for the whole account %s needs the policy's machines listed (the roles of nodes, the issuer, a rotation function): it would map them too", i+1, r.Account)
		}
		if r.Partition != "" && r.Account == "" {
			return fmt.Errorf("rule %d: partition is for an account rule (a user's or role's ARN names its own)", i+1)
		}
	}
	for _, d := range p.Deny {
		if _, err := parseIdent(d); err != nil {
			return fmt.Errorf("deny %q: %w", d, err)
		}
	}
	for _, m := range p.Machines {
		if _, _, err := roleName(m); err != nil {
			return fmt.Errorf("machine %q: %w", m, err)
		}
	}
	for _, r := range p.RefuseShared {
		if _, err := pki.ParseRole(string(r)); err != nil {
			return fmt.Errorf("refuseShared: %w", err)
		}
	}
	return nil
}

// lowest is the role an account-wide rule may grant.
const lowest = pki.Reader

// roleName splits a role ARN into its account and name (its path
// dropped).
func roleName(arn string) (account, name string, err error) {
	id, err := parseIdent(arn)
	if err != nil || id.kind != "role" || id.session != "" {
		return "", "", fmt.Errorf("%q is not an IAM role's ARN (arn:aws:iam::ACCOUNT:role/NAME)", arn)
	}
	return id.account, id.name, nil
}

// ident is an identity as deny and machine entries and rules compare it:
// partition, account, kind, name (without its path: IAM user and role names
// are unique in an account whatever the path, and case-insensitively) and
// a role's session.
type ident struct{ partition, account, kind, name, session string }

// parseIdent reads an IAM user's or role's ARN (with its path or not, a
// role's with "#SESSION"), or an STS assumed-role ARN (as CloudTrail and
// GetCallerIdentity show a session).
func parseIdent(arn string) (ident, error) {
	base, session, _ := strings.Cut(arn, "#")
	parts := strings.SplitN(base, ":", 6)
	if len(parts) != 6 || parts[0] != "arn" || parts[1] == "" || parts[4] == "" {
		return ident{}, fmt.Errorf("%q is not an ARN", arn)
	}
	id := ident{partition: parts[1], account: parts[4], session: session}
	res := parts[5]
	switch {
	case parts[2] == "iam" && strings.HasPrefix(res, "user/"):
		id.kind, res = "user", strings.TrimPrefix(res, "user/")
	case parts[2] == "iam" && strings.HasPrefix(res, "role/"):
		id.kind, res = "role", strings.TrimPrefix(res, "role/")
	case parts[2] == "sts" && strings.HasPrefix(res, "assumed-role/") && session == "":
		role, sess, ok := strings.Cut(strings.TrimPrefix(res, "assumed-role/"), "/")
		if !ok || sess == "" {
			return ident{}, fmt.Errorf("%q: an assumed-role ARN is assumed-role/ROLE/SESSION", arn)
		}
		id.kind, res, id.session = "role", role, sess
	default:
		return ident{}, fmt.Errorf("%q is not an IAM user's or role's ARN", arn)
	}
	id.name = strings.ToLower(res[strings.LastIndex(res, "/")+1:])
	if id.name == "" || (id.kind == "user" && id.session != "") {
		return ident{}, fmt.Errorf("%q names no user or role", arn)
	}
	return id, nil
}

// identOf is p as an ident.
func identOf(p *awsident.Principal) ident {
	return ident{partition: p.Partition, account: p.Account, kind: p.Kind, name: strings.ToLower(p.Name[strings.LastIndex(p.Name, "/")+1:]), session: p.Session}
}

// covers: e (a deny or machine entry) names who, or all of a role's
// sessions when e names none.
func (e ident) covers(who ident) bool {
	return e.partition == who.partition && e.account == who.account && e.kind == who.kind && e.name == who.name &&
		(e.session == "" || e.session == who.session)
}

// Person is who an identity is to the fleet, and the role the policy gives.
type Person struct {
	// Name is the canonical ARN, with "#SESSION" for a role's session: the
	// person, as jobs and the audit log record them.
	Name string
	Role pki.Role
	// Rule is the index of the rule that matched (for messages).
	Rule int
}

// Map gives the identity STS named (p, and the unique ID STS answered:
// AIDA... for a user, AROA...:SESSION for a role's session) its role: the
// highest any matching rule grants, unless it is denied or a machine.
func (pol *Policy) Map(p *awsident.Principal, userID string) (*Person, error) {
	uid, _, _ := strings.Cut(userID, ":")
	return pol.mapPrincipal(p, uid, true)
}

func (pol *Policy) mapPrincipal(p *awsident.Principal, uid string, checkIDs bool) (*Person, error) {
	name := p.ARN
	if p.Session != "" {
		name += "#" + p.Session
	}
	who := identOf(p)
	for _, d := range pol.Deny {
		if e, err := parseIdent(d); err == nil && e.covers(who) {
			return nil, fmt.Errorf("%w: %s is on the policy's deny list (%s)", ErrUnmapped, name, d)
		}
	}
	if p.Kind == "role" {
		for _, m := range pol.Machines {
			if e, err := parseIdent(m); err == nil && e.session == "" && e.covers(who) {
				return nil, fmt.Errorf("%w: %s is a machine's role (nodes, the issuer, a rotation function), never a person", ErrUnmapped, p.ARN)
			}
		}
	}
	if p.Kind == "root" {
		return nil, fmt.Errorf("%w: an account's root user is never mapped; sign in as a user or a role", ErrUnmapped)
	}
	best := -1
	for i, r := range pol.Rules {
		if !r.matches(p, uid, checkIDs) {
			continue
		}
		if best < 0 || rank(r.Grant) > rank(pol.Rules[best].Grant) {
			best = i
		}
	}
	if best < 0 {
		return nil, fmt.Errorf("%w: %s (version %d of the fleet's identity policy has no rule for it: ask an operator to add one)", ErrUnmapped, name, pol.Version)
	}
	return &Person{Name: name, Role: pol.Rules[best].Grant, Rule: best}, nil
}

// Allows is a node's check of a client certificate: one naming a person
// (person, the canonical name the issuer wrote; "" for a shared role
// certificate) with role. A person's role must be one the policy gives
// them, or below (a compromised issuer cannot mint admin for someone the
// policy does not name; unique IDs, which the issuer checked, are not in
// the certificate). A shared role certificate is refused for the roles
// the policy says people log in for.
func (pol *Policy) Allows(person string, role pki.Role) error {
	if person == "" {
		if slices.Contains(pol.RefuseShared, role) {
			return fmt.Errorf("%w: the fleet's identity policy (version %d) refuses shared %s certificates: log in as yourself (`rnx login`)", ErrUnmapped, pol.Version, role)
		}
		return nil
	}
	p, err := personPrincipal(person)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrUnmapped, err)
	}
	got, err := pol.mapPrincipal(p, "", false)
	if err != nil {
		return err
	}
	if rank(role) > rank(got.Role) {
		return fmt.Errorf("%w: the fleet's identity policy (version %d) gives %s the role %s, not %s", ErrUnmapped, pol.Version, person, got.Role, role)
	}
	return nil
}

// personPrincipal reads a person's canonical name back: a user's ARN, or a
// role's ARN with "#SESSION".
func personPrincipal(person string) (*awsident.Principal, error) {
	base, session, hasSession := strings.Cut(person, "#")
	acct, name, err := roleName(base)
	if err == nil && hasSession && session != "" {
		partition := strings.SplitN(base, ":", 3)[1]
		return &awsident.Principal{Partition: partition, Account: acct, Kind: "role", Name: name, Session: session, ARN: base}, nil
	}
	p, perr := awsident.Canonical(base)
	if perr != nil || p.Kind != "user" || hasSession {
		return nil, fmt.Errorf("%q names no person (a user's ARN, or a role's with #SESSION)", person)
	}
	return p, nil
}

func (r Rule) matches(p *awsident.Principal, uid string, checkIDs bool) bool {
	if checkIDs && r.UniqueID != "" && r.UniqueID != uid {
		return false
	}
	switch {
	case r.User != "":
		return p.Kind == "user" && p.ARN == r.User
	case r.Role != "":
		e, err := parseIdent(r.Role)
		if err != nil || p.Kind != "role" || !e.covers(identOf(p)) {
			return false
		}
		if r.Session == "" {
			return true
		}
		ok, _ := path.Match(r.Session, p.Session)
		return ok
	case r.Account != "":
		part := r.Partition
		if part == "" {
			part = "aws"
		}
		return p.Partition == part && p.Account == r.Account && (p.Kind == "user" || p.Kind == "role")
	}
	return false
}

// rank orders the roles from reader up (pki.Roles lists admin first).
func rank(r pki.Role) int {
	if i := slices.Index(pki.Roles, r); i >= 0 {
		return len(pki.Roles) - i
	}
	return -1
}

// Sign signs pol with the root (ca) after checking it.
func Sign(ctx context.Context, pol *Policy, ca *pki.CA) ([]byte, error) {
	if err := pol.Check(); err != nil {
		return nil, err
	}
	body, err := json.Marshal(pol)
	if err != nil {
		return nil, err
	}
	return pki.SignEnvelope(ctx, PayloadType, body, ca)
}

// Open checks only that one of roots signed data and returns the policy:
// for a node's own copy, verified in full when it was taken.
func Open(data []byte, roots []*x509.Certificate) (*Policy, error) {
	body, err := pki.OpenEnvelope(data, PayloadType, MaxSize, roots)
	if err != nil {
		return nil, fmt.Errorf("the identity policy: %w", err)
	}
	var pol Policy
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&pol); err != nil {
		return nil, fmt.Errorf("the identity policy's payload: %w", err)
	}
	return &pol, pol.Check()
}

// Verify takes a signed policy for fleet that one of roots signed, not
// expired at now, and no older than held (nil: none held).
func Verify(data []byte, fleet string, roots []*x509.Certificate, held *Policy, now time.Time) (*Policy, error) {
	pol, err := Open(data, roots)
	if err != nil {
		return nil, err
	}
	switch {
	case pol.Fleet != fleet:
		return nil, fmt.Errorf("the identity policy is fleet %q's, not %q's", pol.Fleet, fleet)
	case !now.Before(pol.Expires):
		return nil, fmt.Errorf("the identity policy (version %d) expired on %s: an operator signs it again", pol.Version, pol.Expires.UTC().Format(time.RFC3339))
	case held != nil && pol.Version < held.Version:
		return nil, fmt.Errorf("the identity policy is version %d, older than the version %d held", pol.Version, held.Version)
	}
	return pol, nil
}
