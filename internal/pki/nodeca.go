package pki

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"
)

// The node-issuing CA's lifetime. Its key is on every node, so a stolen
// node gives it away: the lifetime is what bounds that theft when nobody
// notices it (a revocation of its serial bounds it when somebody does).
//
//   - 14 days, re-keyed when half of it has passed (NodeCADue): a thief's
//     copy is worth two weeks at most, one on average.
//   - Twice a fleet server certificate's lifetime (7 days): a node-issuing
//     CA re-keyed on time never cuts a server certificate short, since
//     every certificate it signed before it was due (at most 7 days old)
//     ends by its expiry; issue caps one that would not.
//   - The half left when it is due is the slack for a scheduled run that
//     stopped: `certs status` reports it due for 7 days before the fleet's
//     nodes can no longer renew. A daily schedule (docs/OPERATIONS.md)
//     leaves six missed runs before that.
//
// Shorter would leave less slack than a week of holidays; longer keeps a
// stolen key useful for a month or more.
const (
	DefaultNodeCALifetime = 14 * 24 * time.Hour
	// MaxNodeCALifetime is the longest a node-issuing CA may be made to
	// live: one that lives longer (made before lifetimes were bounded,
	// with the root's) is due for a new key.
	MaxNodeCALifetime = 90 * 24 * time.Hour
)

// NodeCADue says whether the node-issuing CA needs a new key now, and
// why: it expired, it lives longer than MaxNodeCALifetime, or half of its
// lifetime has passed.
func NodeCADue(c *x509.Certificate, now time.Time) (bool, string) {
	life := LifetimeOf(c)
	switch {
	case !now.Before(c.NotAfter):
		return true, "it expired on " + c.NotAfter.UTC().Format(time.RFC3339)
	case life > MaxNodeCALifetime:
		return true, fmt.Sprintf("it lives %d days, longer than the %d a node-issuing CA may (it was made before its lifetime was bounded)", int(life.Hours()/24), int(MaxNodeCALifetime.Hours()/24))
	case !now.Before(NodeCADueAt(c)):
		return true, "half of its lifetime has passed"
	}
	return false, ""
}

// LifetimeOf is the lifetime c was issued for: its validity less the
// backdate issue added before now (a certificate cut at its CA's expiry
// reads shorter).
func LifetimeOf(c *x509.Certificate) time.Duration {
	span := c.NotAfter.Sub(c.NotBefore)
	if span-5*time.Minute >= 100*time.Minute { // backdate is 5 minutes from a 100-minute lifetime on
		return span - 5*time.Minute
	}
	return span * 20 / 21
}

// IssuedAt is when c was issued: its expiry less its lifetime
// (LifetimeOf), so the backdate issue added does not count. One cut at
// its CA's expiry reads earlier.
func IssuedAt(c *x509.Certificate) time.Time { return c.NotAfter.Add(-LifetimeOf(c)) }

// NodeCADueAt is when the node-issuing CA is due for a new key: half-way
// through its lifetime.
func NodeCADueAt(c *x509.Certificate) time.Time {
	return c.NotBefore.Add(c.NotAfter.Sub(c.NotBefore) / 2)
}

// NameConstraints are the server names a node-issuing CA may sign
// certificates for, carried in its certificate as a critical
// nameConstraints extension (RFC 5280, 4.2.1.10), which Go's verifier and
// openssl enforce on every certificate under it. A DNS name permits itself
// and every name under it ("joblet": joblet, a.joblet); one with a leading
// dot only the names under it (".internal"); a range permits the addresses
// in it. A node's server certificate carries DNS names and IP addresses
// only (IssueServer), so these two kinds bound it.
type NameConstraints struct {
	DNS []string
	IPs []*net.IPNet
}

// DefaultNodeNames are what every node-issuing CA may sign for: the
// private address ranges (RFC 1918, and fc00::/7 for IPv6), loopback, the
// default SANs (localhost, joblet) and the .internal suffix (RFC 9476's
// private-use TLD, AWS's and GCP's internal DNS). None is a name anyone
// could get a public certificate for.
var DefaultNodeNames = []string{"localhost", "joblet", ".internal",
	"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7", "127.0.0.0/8", "::1"}

// DefaultNodeConstraints parses DefaultNodeNames.
func DefaultNodeConstraints() NameConstraints {
	nc, err := ParseNameConstraints(DefaultNodeNames)
	if err != nil {
		panic(err) // constant input
	}
	return nc
}

// ParseNameConstraints reads names an operator gives: DNS names (a
// leading "*." or "." for the names under one only), IP addresses (that
// address alone) and CIDR ranges. A constraint that permits everything of
// its kind (".", "*", a /0 range) is refused: it would bound nothing.
func ParseNameConstraints(items []string) (NameConstraints, error) {
	var nc NameConstraints
	for _, raw := range items {
		item := strings.TrimSpace(raw)
		if item == "" {
			return NameConstraints{}, errors.New("empty name in the list (check for a stray comma)")
		}
		if strings.Contains(item, "/") {
			_, n, err := net.ParseCIDR(item)
			if err != nil {
				return NameConstraints{}, fmt.Errorf("%q is not a CIDR range: %w", item, err)
			}
			if ones, _ := n.Mask.Size(); ones == 0 {
				return NameConstraints{}, fmt.Errorf("%q permits every address: give the ranges the fleet's nodes use", item)
			}
			nc = nc.union(NameConstraints{IPs: []*net.IPNet{normalNet(n)}})
			continue
		}
		if ip := parseIP(item); ip != nil {
			bits := 8 * len(ip)
			nc = nc.union(NameConstraints{IPs: []*net.IPNet{{IP: ip, Mask: net.CIDRMask(bits, bits)}}})
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(item, "."))
		dot := ""
		switch {
		case strings.HasPrefix(name, "*."):
			name, dot = name[2:], "."
		case strings.HasPrefix(name, "."):
			name, dot = name[1:], "."
		}
		if name == "" || name == "*" {
			return NameConstraints{}, fmt.Errorf("%q permits every name: give the names the fleet's nodes use", item)
		}
		if err := checkDNSName(name); err != nil || strings.Contains(name, "*") {
			return NameConstraints{}, fmt.Errorf("%q is not a DNS name, IP address or CIDR range (%v)", item, err)
		}
		nc = nc.union(NameConstraints{DNS: []string{dot + name}})
	}
	return nc, nil
}

// normalNet is n with a 4-byte IPv4 address and mask: the form a
// certificate carries and Go's and openssl's verifiers compare with a
// 4-byte IPv4 SAN (of another length, nothing matches).
func normalNet(n *net.IPNet) *net.IPNet {
	if v4 := n.IP.To4(); v4 != nil && len(n.Mask) == net.IPv6len {
		return &net.IPNet{IP: v4, Mask: n.Mask[12:]}
	}
	if v4 := n.IP.To4(); v4 != nil {
		return &net.IPNet{IP: v4, Mask: n.Mask}
	}
	return n
}

// NodeConstraintsOf reads the name constraints a node-issuing CA
// certificate carries; ok is false for one that carries none (made before
// they existed).
func NodeConstraintsOf(c *x509.Certificate) (nc NameConstraints, ok bool) {
	nc = NameConstraints{DNS: slices.Clone(c.PermittedDNSDomains), IPs: slices.Clone(c.PermittedIPRanges)}
	return nc, !nc.Empty()
}

// Empty reports whether nc permits nothing, that is, constrains nothing.
func (nc NameConstraints) Empty() bool { return len(nc.DNS) == 0 && len(nc.IPs) == 0 }

// Union is nc with what of other it does not already permit.
func (nc NameConstraints) Union(other NameConstraints) NameConstraints { return nc.union(other) }

func (nc NameConstraints) union(other NameConstraints) NameConstraints {
	out := NameConstraints{DNS: slices.Clone(nc.DNS), IPs: slices.Clone(nc.IPs)}
	for _, d := range other.DNS {
		if !out.coversDNS(d) {
			out.DNS = append(out.DNS, d)
		}
	}
	for _, n := range other.IPs {
		if !out.coversNet(n) {
			out.IPs = append(out.IPs, n)
		}
	}
	return out
}

// Covers reports whether everything other permits, nc permits too.
func (nc NameConstraints) Covers(other NameConstraints) bool {
	return !slices.ContainsFunc(other.DNS, func(d string) bool { return !nc.coversDNS(d) }) &&
		!slices.ContainsFunc(other.IPs, func(n *net.IPNet) bool { return !nc.coversNet(n) })
}

// coversDNS: a constraint d (a name and those under it, or with a leading
// dot those under it only) is within nc. Any name under d is "label.d":
// "*" stands for that label, and can be part of no constraint.
func (nc NameConstraints) coversDNS(d string) bool {
	name := d
	if strings.HasPrefix(d, ".") {
		name = "*" + d
	}
	return slices.ContainsFunc(nc.DNS, func(c string) bool { return matchDomain(name, c) })
}

func (nc NameConstraints) coversNet(n *net.IPNet) bool {
	ones, _ := n.Mask.Size()
	return slices.ContainsFunc(nc.IPs, func(c *net.IPNet) bool {
		cones, _ := c.Mask.Size()
		return len(c.IP) == len(n.IP) && cones <= ones && c.Contains(n.IP)
	})
}

// matchDomain is RFC 5280's DNS name constraint match, as Go's verifier
// and openssl apply it: a constraint with a leading dot matches the names
// under it; one without, itself and the names under it. Both are lower
// case (ParseSANs and ParseNameConstraints make them so).
func matchDomain(name, c string) bool {
	if strings.HasPrefix(c, ".") {
		return strings.HasSuffix(name, c)
	}
	return name == c || strings.HasSuffix(name, "."+c)
}

// ErrNameNotPermitted means a server certificate would name something
// outside its node-issuing CA's name constraints: every verifier would
// refuse it.
var ErrNameNotPermitted = errors.New("outside the names the node-issuing CA may sign for")

// Permits reports the first of sans that nc does not permit, or nil. An
// empty nc (a CA without name constraints) permits everything.
func (nc NameConstraints) Permits(sans SANs) error {
	if nc.Empty() {
		return nil
	}
	for _, d := range sans.DNS {
		if !slices.ContainsFunc(nc.DNS, func(c string) bool { return matchDomain(strings.ToLower(d), c) }) {
			return &NotPermittedError{Name: d, Permitted: nc}
		}
	}
	for _, ip := range sans.IPs {
		if v4 := ip.To4(); v4 != nil {
			ip = v4
		}
		if !slices.ContainsFunc(nc.IPs, func(c *net.IPNet) bool { return len(c.IP) == len(ip) && c.Contains(ip) }) {
			return &NotPermittedError{Name: ip.String(), Permitted: nc}
		}
	}
	return nil
}

// NotPermittedError names the server name outside a node-issuing CA's
// constraints, and what they permit.
type NotPermittedError struct {
	Name      string
	Permitted NameConstraints
}

func (e *NotPermittedError) Error() string {
	return fmt.Sprintf("server name %q is %v (it permits %s)", e.Name, ErrNameNotPermitted, strings.Join(e.Permitted.Strings(), ", "))
}

func (e *NotPermittedError) Unwrap() error { return ErrNameNotPermitted }

// Strings are the constraints as an operator writes them: DNS names, then
// CIDR ranges.
func (nc NameConstraints) Strings() []string {
	out := slices.Clone(nc.DNS)
	for _, n := range nc.IPs {
		out = append(out, n.String())
	}
	return out
}

// nowhere is the one domain a node-issuing CA permits URI and e-mail
// names under, kinds a node's server certificate never carries: .invalid
// (RFC 6761) resolves nowhere, so a forged certificate cannot use them.
// A kind of name without a permitted subtree of its own is not
// constrained at all.
const nowhere = "invalid"
