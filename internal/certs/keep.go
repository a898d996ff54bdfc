package certs

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// NodeSetting names one of a node's settings that a bootstrap re-run keeps
// from the node's config unless it is given (BootstrapOptions.Given).
type NodeSetting uint

// The settings a re-run keeps.
const (
	GivenListenAddress NodeSetting = 1 << iota
	GivenPort
	GivenServerAddress
	GivenPublicAddress
	GivenAdditionalNames
	GivenServerLifetime
	GivenNodeID
)

// given reports whether this run gives setting s: its bit in Given, or a
// value (callers that set a field mean it).
func (o *BootstrapOptions) given(s NodeSetting) bool {
	if o.Given&s != 0 {
		return true
	}
	switch s {
	case GivenListenAddress:
		return o.ListenAddress != ""
	case GivenPort:
		return o.Port != 0
	case GivenServerAddress:
		return o.ServerAddress != ""
	case GivenPublicAddress:
		return o.PublicAddress != ""
	case GivenAdditionalNames:
		return o.AdditionalNames != nil
	case GivenNodeID:
		return o.NodeID != ""
	}
	return false
}

// keep fills the node settings this run does not give from the node's
// existing config (a re-run never silently changes a node), and refuses a
// given change that would move the node's listen address or port, change
// its node id (job IDs name it: internal/jobid routes by it), or change the
// names its server certificate carries: dropping one cuts off the clients,
// balancer health checks and other nodes' configs that reach it by it;
// adding one widens what the certificate may be presented as (a settings
// file naming someone else's balancer). Either needs Reconfigure. It runs
// before anything is read or written. lifetime is the fleet's server
// lifetime, kept the same way. added are the names this run adds to the
// certificate (allowed by Reconfigure), for the caller to report.
func (o *BootstrapOptions) keep(old *config.Server, lifetime *time.Duration) (added []string, err error) {
	if old == nil {
		return nil, nil
	}
	var refused []string
	if !o.given(GivenListenAddress) {
		o.ListenAddress = old.Server.Address
	} else if o.ListenAddress != old.Server.Address && old.Server.Address != "" {
		refused = append(refused, fmt.Sprintf("the listen address would move from %s to %s", old.Server.Address, o.ListenAddress))
	}
	if !o.given(GivenPort) {
		o.Port = old.Server.Port
	} else if o.Port != old.Server.Port {
		refused = append(refused, fmt.Sprintf("the port would move from %d to %d", old.Server.Port, o.Port))
	}
	if !o.given(GivenNodeID) {
		o.NodeID = old.Server.NodeID
	} else if o.NodeID != old.Server.NodeID && old.Server.NodeID != "" {
		refused = append(refused, fmt.Sprintf("the node id would change from %s to %s (its jobs' IDs name %s: they could no longer be routed to it)",
			old.Server.NodeID, o.NodeID, old.Server.NodeID))
	}
	recorded := old.Server.ServerAddress != "" || old.Server.PublicAddress != "" || old.Server.AdditionalNames != nil
	if !o.given(GivenServerAddress) && old.Server.ServerAddress != "" {
		o.ServerAddress = old.Server.ServerAddress
	}
	if !o.given(GivenPublicAddress) {
		o.PublicAddress = old.Server.PublicAddress
	}
	oldNames := serverCertNames(old)
	if !o.given(GivenAdditionalNames) {
		o.AdditionalNames = old.Server.AdditionalNames
		if !recorded {
			// A config from before the names were recorded: keep every
			// name its certificate carries.
			o.AdditionalNames = nil
			for _, n := range oldNames {
				if !slices.Contains(pki.DefaultSANNames, n) {
					o.AdditionalNames = append(o.AdditionalNames, n)
				}
			}
		}
	}
	if *lifetime == 0 && o.Given&GivenServerLifetime == 0 && old.Security.ServerLifetime != "" {
		if d, err := time.ParseDuration(old.Security.ServerLifetime); err == nil && d > 0 {
			*lifetime = d
		}
	}
	if len(oldNames) > 0 {
		// The names the certificate will carry, defaults (the primary
		// IP) included, as Bootstrap computes them after keep.
		d := *o
		d.defaults()
		sans, err := d.serverSANs()
		if err != nil {
			return nil, err
		}
		newNames := sanNames(sans)
		// A name the node's config already records but its certificate
		// lacks (`certs status` flags it) is no widening: the re-run that
		// status advises adds it back.
		known := append(append([]string{}, oldNames...), MissingNames(old)...)
		var dropped []string
		for _, n := range oldNames {
			if !slices.Contains(newNames, n) {
				dropped = append(dropped, n)
			}
		}
		for _, n := range newNames {
			if !slices.Contains(known, n) {
				added = append(added, n)
			}
		}
		if len(dropped) > 0 && !o.Reconfigure {
			refused = append(refused, fmt.Sprintf("the server certificate would lose %s (now: %s; this run: %s)",
				strings.Join(dropped, ", "), strings.Join(oldNames, ", "), strings.Join(newNames, ", ")))
		}
		if len(added) > 0 && !o.Reconfigure {
			refused = append(refused, fmt.Sprintf("the server certificate would also carry %s (now: %s; this run: %s)",
				strings.Join(added, ", "), strings.Join(oldNames, ", "), strings.Join(newNames, ", ")))
		}
	}
	if len(refused) == 0 || o.Reconfigure {
		return added, nil
	}
	return nil, fmt.Errorf("%w: this re-run would change the node: %s. Nothing was written. Settings not given are kept from %s; "+
		"pass --reconfigure to make this change on purpose (clients and balancers that use the old values stop reaching the node; "+
		"a name added is one the node's certificate may be presented as)",
		ErrUsage, strings.Join(refused, "; "), "its joblet-config.yml")
}

// serverCertNames are the names (DNS and IP) of a config's server
// certificate, nil when it has none that parses.
func serverCertNames(s *config.Server) []string {
	certs, err := pki.ParseCerts([]byte(s.Security.ServerCert))
	if err != nil || len(certs) == 0 {
		return nil
	}
	names := append([]string{}, certs[0].DNSNames...)
	for _, ip := range certs[0].IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

func sanNames(s pki.SANs) []string {
	names := append([]string{}, s.DNS...)
	for _, ip := range s.IPs {
		names = append(names, ip.String())
	}
	return names
}

// MissingNames are the names a node's config says its server certificate
// carries (its address, its balancer's name, its additional names) that the
// certificate lacks: clients that use them fail the handshake.
func MissingNames(s *config.Server) []string {
	want := []string{}
	if s.Server.ServerAddress != "" {
		want = append(want, s.Server.ServerAddress)
	}
	if s.Server.PublicAddress != "" {
		if host, _, err := splitPublic(s.Server.PublicAddress); err == nil {
			want = append(want, host)
		}
	}
	want = append(want, s.Server.AdditionalNames...)
	sans, err := pki.ParseSANs(want)
	if err != nil {
		return nil
	}
	have := serverCertNames(s)
	var missing []string
	for _, n := range sanNames(sans) {
		if !slices.Contains(have, n) {
			missing = append(missing, n)
		}
	}
	return missing
}
