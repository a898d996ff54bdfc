package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Health levels, ordered; they are also the exit codes of `certs status`.
const (
	OK        = 0 // all good
	Attention = 1 // something expires within the warning window, or is out of sync
	Broken    = 2 // expired, broken or unreachable
)

// CertReport describes one certificate for `status`.
type CertReport struct {
	Name        string    `json:"name"`
	Where       string    `json:"where"`
	Subject     string    `json:"subject,omitempty"`
	Serial      string    `json:"serial,omitempty"`
	Fingerprint string    `json:"sha256,omitempty"`
	NotBefore   time.Time `json:"notBefore,omitempty"`
	NotAfter    time.Time `json:"notAfter,omitempty"`
	DaysLeft    int       `json:"daysLeft"`
	SANs        []string  `json:"sans,omitempty"`
	Level       int       `json:"level"`
	Problems    []string  `json:"problems,omitempty"`
}

// Report is the whole `status` answer.
type Report struct {
	Store        string       `json:"store"`
	Phase        string       `json:"rotationPhase,omitempty"`
	Revocations  []Revocation `json:"revocations,omitempty"`
	Certificates []CertReport `json:"certificates"`
	Problems     []string     `json:"problems,omitempty"`
	Level        int          `json:"level"`
}

func (r *Report) raise(level int, problem string) {
	r.Problems = append(r.Problems, problem)
	r.Level = max(r.Level, level)
}

// StatusOptions say what to inspect.
type StatusOptions struct {
	Store     secretstore.Store // nil when it could not be opened (StoreErr says why)
	StoreErr  error
	StoreDesc string
	Prefix    string
	// ServerConfig and RnxConfig are this node's files ("" to skip).
	ServerConfig, RnxConfig string
	WarnDays                int
	Now                     time.Time
}

// Status inspects the shared certificates in the store and this node's
// files, and grades them: see OK, Attention, Broken.
func Status(ctx context.Context, o StatusOptions) *Report {
	n := secretstore.Names{Prefix: o.Prefix}
	rep := &Report{Store: o.StoreDesc}
	warn := time.Duration(o.WarnDays) * 24 * time.Hour
	grade := func(name, where string, c *x509.Certificate) CertReport {
		cr := CertReport{Name: name, Where: where, Subject: c.Subject.String(), Serial: c.SerialNumber.Text(16),
			Fingerprint: fingerprint(c), NotBefore: c.NotBefore.UTC(), NotAfter: c.NotAfter.UTC(),
			DaysLeft: int(c.NotAfter.Sub(o.Now).Hours() / 24)}
		cr.SANs = append(cr.SANs, c.DNSNames...)
		for _, ip := range c.IPAddresses {
			cr.SANs = append(cr.SANs, ip.String())
		}
		switch {
		case !o.Now.Before(c.NotAfter):
			cr.Level, cr.Problems = Broken, []string{"expired on " + c.NotAfter.UTC().Format(time.RFC3339)}
		case c.NotAfter.Sub(o.Now) < warn:
			cr.Level, cr.Problems = Attention, []string{fmt.Sprintf("expires in %d days (warning at %d)", cr.DaysLeft, o.WarnDays)}
		}
		return cr
	}
	add := func(cr CertReport) {
		rep.Certificates = append(rep.Certificates, cr)
		for _, p := range cr.Problems {
			rep.raise(cr.Level, cr.Name+": "+p)
		}
	}

	var storeVals map[string]string
	var caCert *x509.Certificate
	var trust []*x509.Certificate
	revoked := map[string]bool{}
	if o.Store == nil {
		rep.raise(Broken, fmt.Sprintf("store unreachable: %v", o.StoreErr))
	} else if vals, err := o.Store.Get(ctx, append(n.All(), n.Bundle(), n.CRL())); err != nil {
		rep.raise(Broken, fmt.Sprintf("store unreachable: %v", err))
	} else {
		storeVals = vals
		where := o.StoreDesc + " (" + n.CACert() + ")"
		if c, err := pki.ParseCert([]byte(vals[n.CACert()])); err != nil {
			rep.raise(Broken, fmt.Sprintf("%s: %v", n.CACert(), err))
		} else {
			caCert = c
			cr := grade("CA Certificate", where, c)
			if err := pki.CheckCA(c, o.Now); err != nil && cr.Level < Broken {
				cr.Level, cr.Problems = Broken, append(cr.Problems, err.Error())
			}
			add(cr)
			trust, _ = trustFrom(vals[n.Bundle()], c, n.Bundle())
			var err error
			if revoked, rep.Revocations, err = revokedIn(vals[n.CRL()], trust, n.CRL()); err != nil {
				rep.raise(Broken, err.Error())
				revoked = map[string]bool{}
			}
		}
		for _, role := range pki.Roles {
			c, err := pki.ParseCert([]byte(vals[n.ClientCert(role)]))
			if err != nil {
				rep.raise(Broken, fmt.Sprintf("%s: %v", n.ClientCert(role), err))
				continue
			}
			cr := grade(roleTitle(role), o.StoreDesc+" ("+n.ClientCert(role)+")", c)
			if k, err := pki.ParseKey([]byte(vals[n.ClientKey(role)])); err != nil || pki.MatchesKey(c, k) != nil {
				cr.Level, cr.Problems = Broken, append(cr.Problems, "does not match "+n.ClientKey(role))
			}
			if pki.CheckNotRevoked(c, revoked) != nil {
				cr.Level, cr.Problems = Broken, append(cr.Problems, "is revoked: issue the role a new certificate (`rotate-ca begin`, `promote`, `finish` re-issues every role's)")
			}
			add(cr)
		}
		if st, err := (&Rotation{Store: o.Store, Prefix: o.Prefix}).Status(ctx); err == nil {
			rep.Phase = st.Phase
		}
	}

	if o.ServerConfig != "" {
		srv, err := config.LoadServer(o.ServerConfig)
		if err != nil {
			rep.raise(Broken, err.Error())
		} else if leaf, err := pki.ParseCert([]byte(srv.Security.ServerCert)); err != nil {
			rep.raise(Broken, fmt.Sprintf("security.serverCert in %s: %v", o.ServerConfig, err))
		} else {
			cr := grade("Server Certificate", "local ("+o.ServerConfig+")", leaf)
			if pki.CheckNotRevoked(leaf, revoked) != nil {
				cr.Level = max(cr.Level, Attention)
				cr.Problems = append(cr.Problems, "is revoked (the running server renews it on its next refresh; or `joblet certs renew`)")
			}
			if caCert != nil {
				if leaf.CheckSignatureFrom(caCert) != nil && cr.Level < Broken {
					cr.Level = max(cr.Level, Attention)
					cr.Problems = append(cr.Problems, "not signed by the store's current CA (renew: `joblet certs renew`)")
				}
				if !samePEMSet(srv.Security.CACert, trust) {
					cr.Level = max(cr.Level, Attention)
					cr.Problems = append(cr.Problems, "the local trust bundle differs from the store's (the server refreshes it; or run `joblet certs renew`)")
				}
			}
			add(cr)
		}
	}
	if o.RnxConfig != "" && storeVals != nil {
		if rnx, err := config.LoadRnx(o.RnxConfig); err == nil {
			for _, name := range rnx.NodeNames() {
				c, err := pki.ParseCert([]byte(rnx.Nodes[name].Cert))
				if err != nil {
					continue
				}
				role, err := pki.RoleOf(c)
				if err == nil && rnx.Nodes[name].Cert != storeVals[n.ClientCert(role)] {
					rep.raise(Attention, fmt.Sprintf("%s: node %q holds a %s client certificate that is not the store's current one (run `rnx config refresh`)", o.RnxConfig, name, role))
				}
			}
		}
	}
	return rep
}
