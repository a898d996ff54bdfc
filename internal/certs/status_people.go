package certs

// Status's view of people (rnx login, issue 26): the identity policy the
// nodes hold people to, the user-issuing CA, and how many shared role
// certificates still stand beside people's own.

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

// PeopleReport is status's section on people.
type PeopleReport struct {
	// PolicyVersion and PolicyExpires: the stored identity policy (0: none).
	PolicyVersion uint64    `json:"identityPolicyVersion,omitempty"`
	PolicyExpires time.Time `json:"identityPolicyExpires,omitzero"`
	Rules         int       `json:"rules"`
	// SharedRoles are the roles whose shared certificate nodes still
	// accept (valid, not revoked, not refused by the policy): each is one
	// key copied to everyone who holds that role's config.
	SharedRoles []pki.Role `json:"sharedRoles"`
	// RefusedShared are the roles whose shared certificates the policy
	// refuses.
	RefusedShared []pki.Role `json:"refusedShared,omitempty"`
	// UserCA is "" when the fleet has none.
	UserCA string `json:"userCA,omitempty"`
}

// userCACert reads the user-issuing CA's certificate, best effort: an
// operator whose policy does not reach <prefix>/user-ca sees none.
func (f *Fleet) userCACert(ctx context.Context, n Names) string {
	vals, err := f.Store.Get(ctx, []string{n.UserCA()})
	if err != nil {
		return ""
	}
	certPEM, _ := pki.SplitPEM([]byte(vals[n.UserCA()]))
	return string(certPEM)
}

// people grades the identity policy and the user-issuing CA, and counts
// the shared role certificates still accepted.
func (g *grader) people(s *state, userCA string) {
	rep := &PeopleReport{SharedRoles: []pki.Role{}}
	var pol *idpolicy.Policy
	if raw := s.vals[s.n.IdentityPolicy()]; raw != "" {
		p, err := idpolicy.Verify([]byte(raw), s.n.Prefix, s.trust, nil, g.now)
		if err == nil {
			err = s.policyCurrent(p)
		}
		if err != nil {
			g.rep.raise(Broken, fmt.Sprintf("%s: %v: nodes keep the policy they hold and accept no new one; sign it again (`joblet certs identity-policy sign`)", s.n.IdentityPolicy(), err))
		} else {
			pol = p
			rep.PolicyVersion, rep.PolicyExpires, rep.Rules, rep.RefusedShared = p.Version, p.Expires.UTC(), len(p.Rules), p.RefuseShared
			if left := p.Expires.Sub(g.now); left < time.Duration(g.o.WarnDays)*24*time.Hour/2 {
				g.rep.raise(Attention, fmt.Sprintf("%s expires in %s: nodes then accept no person; sign it again (`joblet certs identity-policy sign`, on the schedule of `certs trust sign`)", s.n.IdentityPolicy(), left.Round(time.Hour)))
			}
		}
	}
	for _, role := range pki.Roles {
		c := s.clients[role]
		if c == nil || !g.now.Before(c.NotAfter) || pki.CheckNotRevoked(c, s.revoked) != nil {
			continue
		}
		if pol != nil && slices.Contains(pol.RefuseShared, role) {
			continue
		}
		rep.SharedRoles = append(rep.SharedRoles, role)
	}
	if userCA != "" {
		c, err := pki.ParseCert([]byte(userCA))
		if err != nil {
			g.rep.raise(Broken, fmt.Sprintf("%s: %v: make it again with `joblet certs user-ca --rotate`", s.n.UserCA(), err))
		} else {
			rep.UserCA = pki.SerialHex(c.SerialNumber)
			cr := g.cert("User-issuing CA (rnx login)", g.storeDesc+" ("+s.n.UserCA()+")", c)
			if pki.CheckNotRevoked(c, s.revoked) != nil {
				cr.Level, cr.Problems = Broken, append(cr.Problems, "is revoked: no person's certificate from it is accepted; `joblet certs user-ca --rotate` makes a new one")
			}
			g.add(cr)
		}
	}
	if rep.PolicyVersion == 0 && rep.UserCA == "" {
		return // a fleet without people: nothing to say
	}
	if pol == nil {
		g.rep.raise(Attention, fmt.Sprintf("the fleet has a user-issuing CA and no valid identity policy (%s): nodes accept no person", s.n.IdentityPolicy()))
	}
	g.rep.People = rep
}
