package pki

import (
	"fmt"
	"net"
	"strings"
)

// DefaultSANNames are in every server certificate so local tools and the
// conventional service name always work.
var DefaultSANNames = []string{"localhost", "joblet", "127.0.0.1", "::1"}

// ParseSANs sorts names into DNS names and IP addresses, dropping duplicates
// and keeping order. It rejects what would make an unusable or dangerous
// certificate, naming the entry: empty items, host:port, unspecified
// addresses (0.0.0.0, ::), and invalid DNS names.
func ParseSANs(names []string) (SANs, error) {
	var out SANs
	seen := map[string]bool{}
	for _, raw := range names {
		name := strings.TrimSpace(raw)
		if name == "" {
			return SANs{}, fmt.Errorf("empty name in the SAN list (check for a stray comma)")
		}
		if ip := parseIP(name); ip != nil {
			if ip.IsUnspecified() {
				return SANs{}, fmt.Errorf("SAN %q is the unspecified address: it is where a server listens, not an address clients can reach; give the node's real address", name)
			}
			key := ip.String()
			if !seen[key] {
				seen[key] = true
				out.IPs = append(out.IPs, ip)
			}
			continue
		}
		if host, port, err := net.SplitHostPort(name); err == nil && port != "" {
			return SANs{}, fmt.Errorf("SAN %q has a port: give the name %q without :%s", name, host, port)
		}
		dns := strings.ToLower(strings.TrimSuffix(name, "."))
		if err := checkDNSName(dns); err != nil {
			return SANs{}, fmt.Errorf("SAN %q is not a valid DNS name or IP address: %w", name, err)
		}
		if !seen[dns] {
			seen[dns] = true
			out.DNS = append(out.DNS, dns)
		}
	}
	return out, nil
}

// parseIP accepts IPv4, IPv6 and bracketed IPv6 ([::1]).
func parseIP(s string) net.IP {
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		s = s[1 : len(s)-1]
	}
	ip := net.ParseIP(s)
	if ip == nil {
		return nil
	}
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip
}

// checkDNSName applies RFC 1035/1123 host name rules, allowing one leading
// wildcard label as RFC 6125 does.
func checkDNSName(name string) error {
	if len(name) > 253 {
		return fmt.Errorf("longer than 253 characters")
	}
	labels := strings.Split(name, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 1 {
			continue
		}
		if l == "" {
			return fmt.Errorf("empty label")
		}
		if len(l) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", l)
		}
		if l[0] == '-' || l[len(l)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", l)
		}
		for _, c := range l {
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("label %q has the character %q (allowed: letters, digits, hyphen)", l, c)
			}
		}
	}
	// An all-numeric last label would be read as a (bad) IP address.
	last := labels[len(labels)-1]
	if strings.Trim(last, "0123456789") == "" {
		return fmt.Errorf("it looks like an IP address but does not parse as one")
	}
	return nil
}

// SplitList splits a comma-separated list (JOBLET_ADDITIONAL_NAMES), keeping
// empty items so ParseSANs can report them; an empty string is no items.
func SplitList(s string) []string {
	if strings.TrimSpace(s) == "" {
		return nil
	}
	return strings.Split(s, ",")
}
