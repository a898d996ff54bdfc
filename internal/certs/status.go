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
	Store string `json:"store"`
	// CAKey says where the CA's private key is: "AWS KMS key ARN" or
	// "store (<prefix>/ca-key)".
	CAKey        string       `json:"caKey,omitempty"`
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
	// CAKMSKeyID: KMS mode even without a server config.
	CAKMSKeyID string
}

// caKeyPlace says where the key of the current CA is, from what was read
// (ca-key in store mode, ca-kms-key in KMS mode).
func caKeyPlace(ctx context.Context, st secretstore.Store, n Names, vals map[string]string, ca *x509.Certificate) string {
	if k, err := pki.ParseKey([]byte(vals[n.CAKey()])); err == nil && samePublicKey(ca, k) {
		return "store (" + n.CAKey() + ")"
	}
	ref := vals[n.CAKMSKey()]
	if ref == "" {
		if got, err := st.Get(ctx, []string{n.CAKMSKey()}); err == nil {
			ref = got[n.CAKMSKey()]
		}
	}
	if ref != "" {
		return "AWS KMS key " + ref
	}
	return "unknown: neither " + n.CAKey() + " nor " + n.CAKMSKey() + " holds it"
}

// rotationPhase derives the phase as Rotation.Status does, from the CA
// certificate's pending version and the trust bundle, without reading any
// key (a node's status runs with a node's permissions).
func rotationPhase(ctx context.Context, st secretstore.Store, n Names, current *x509.Certificate, bundlePEM string) (string, error) {
	pend, err := st.GetStage(ctx, []string{n.CACert()}, secretstore.Pending)
	if err != nil {
		return "", err
	}
	if p := pend[n.CACert()]; p != "" && p != string(pki.EncodeCert(current)) {
		return PhaseBegun, nil
	}
	trust, err := trustFrom(bundlePEM, current, n.Bundle())
	if err != nil {
		return "", err
	}
	if len(trust) > 1 {
		return PhasePromoted, nil
	}
	return PhaseStable, nil
}

// Status inspects the shared certificates in the store and this node's
// files, and grades them: see OK, Attention, Broken.
func Status(ctx context.Context, o StatusOptions) *Report {
	n := Names{Prefix: o.Prefix}
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
	// A KMS-mode node never reads ca-key (its policy does not allow it).
	kmsID := o.CAKMSKeyID
	if o.ServerConfig != "" && kmsID == "" {
		if srv, err := config.LoadServer(o.ServerConfig); err == nil {
			kmsID = srv.Security.CAKMSKeyID
		}
	}
	read := append(n.All(), n.Bundle(), n.CRL())
	if kmsID != "" {
		read = append(withoutName(read, n.CAKey()), n.CAKMSKey())
	}
	if o.Store == nil {
		rep.raise(Broken, fmt.Sprintf("store unreachable: %v", o.StoreErr))
	} else if vals, err := o.Store.Get(ctx, read); err != nil {
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
			rep.CAKey = caKeyPlace(ctx, o.Store, n, vals, c)
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
		if caCert != nil {
			if phase, err := rotationPhase(ctx, o.Store, n, caCert, vals[n.Bundle()]); err == nil {
				rep.Phase = phase
			}
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
