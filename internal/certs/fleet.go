// Package certs is the certificate lifecycle of a joblet fleet: one Fleet
// value (a store, its secret names, the clock, key type and lifetimes, and
// how to open a CA key held in AWS KMS) whose methods bootstrap a node,
// refresh and renew it, rotate the CA, re-issue and revoke certificates,
// move a CA between stores and report the fleet's health. It reads and
// writes the store through secretstore.Store only; where the store is and
// how KMS is reached is decided by the caller (internal/backend and the
// commands).
package certs

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// DefaultPrefix is the secret prefix when SECRETS_PREFIX is not set.
const DefaultPrefix = config.DefaultPrefix

// ErrUsage marks a request that contradicts itself or names an unknown
// mode: the caller's input, not the environment, is wrong (exit code 2).
var ErrUsage = config.ErrUsage

// ErrInconsistentStore marks a stored state the lifecycle will not repair on
// its own (a certificate without its key, a pair that does not match, a
// corrupt or expired CA): the message says what to do.
var ErrInconsistentStore = errors.New("the shared certificates in the store need attention")

// inconsistent reports that the secret name holds something unusable.
func inconsistent(name string, err error) error {
	return fmt.Errorf("%w: %s: %v", ErrInconsistentStore, name, err)
}

// Fleet is one fleet's shared state in one store. The zero values of the
// optional fields take the defaults (defaults, below), so a Fleet is
// usable with Store alone.
//
// Receivers: an exported method's receiver is the caller's value, named
// fl, and it starts with f := fl.defaults() (or calls other exported
// methods); unexported methods run on that copy and name it f. So an f
// always has its defaults, and fl is read only to call exported methods or
// to tell a field the caller left unset (Bootstrap's ServerLifetime).
type Fleet struct {
	Store     secretstore.Store
	StoreDesc string // for humans: "Secrets Manager (us-east-1)", "directory store /srv/pki"
	Prefix    string // secret names are <Prefix>/ca-cert, ...; default DefaultPrefix

	KeyType                                    pki.KeyType
	CALifetime, ClientLifetime, ServerLifetime time.Duration
	// NodeCALifetime is the lifetime of a node-issuing CA made or
	// re-issued by this Fleet; zero: the one it replaces keeps its own,
	// a new one lives pki.DefaultNodeCALifetime (nodeCALifetime).
	NodeCALifetime time.Duration
	// PermitNames widen what a node-issuing CA made or re-issued by this
	// Fleet may sign server certificates for, beyond the defaults
	// (pki.DefaultNodeNames) or those the current one carries (nodeca.go).
	PermitNames pki.NameConstraints

	// OpenKMS opens a CA key held in AWS KMS; nil where KMS cannot be
	// reached (off AWS), and then a KMS fleet is refused with the reason.
	OpenKMS KMSOpener
	// KMSRegion is the region of a KMS key named without one (a key id or
	// alias): the command sets the Secrets Manager store's. A key ARN's
	// own region always wins (CAKeyRef).
	KMSRegion string

	Now func() time.Time
	Log *slog.Logger

	// Pin, when set, is the root a joining run (bootstrap, ClientNode)
	// must find in the store (pin.go); nil: it trusts what it finds.
	Pin *pki.Pin
	// RootRunNodes: how a scheduled rotation of the root asks the nodes
	// whether the fleet is ready for its step (rotateroot.go).
	RootRunNodes *RootRunNodes

	// SeenDir, when set, is where an operator's commands keep the newest
	// trust state they verified, per fleet (operatorseen.go): a floor the
	// store cannot lower, for a store whose history was erased.
	SeenDir string
}

// defaults is the one place the lifecycle's defaults are written. It
// returns a copy, so concurrent calls never write the caller's value.
func (f *Fleet) defaults() Fleet {
	d := *f
	if d.Prefix == "" {
		d.Prefix = DefaultPrefix
	}
	if d.KeyType == "" {
		d.KeyType = pki.ECDSAP256
	}
	if d.CALifetime == 0 {
		d.CALifetime = pki.DefaultCALifetime
	}
	if d.ClientLifetime == 0 {
		d.ClientLifetime = pki.DefaultClientLifetime
	}
	if d.ServerLifetime == 0 {
		d.ServerLifetime = pki.DefaultServerLifetime
	}
	if d.StoreDesc == "" {
		d.StoreDesc = "store"
	}
	if d.Now == nil {
		d.Now = time.Now
	}
	if d.Log == nil {
		d.Log = slog.Default()
	}
	return d
}

// names are the fleet's secret names.
func (f *Fleet) names() Names { return Names{Prefix: f.Prefix} }

// where names a secret of this fleet for humans.
func (f *Fleet) where(name string) string { return f.StoreDesc + " (" + name + ")" }

// CertInfo identifies one certificate in every report.
type CertInfo struct {
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"sha256"`
	NotAfter    time.Time `json:"notAfter"`
	// KeyID is the subject key id (hex): a CA's, as the certificates it
	// issued name it.
	KeyID string `json:"keyId,omitempty"`
}

func infoOf(c *x509.Certificate) CertInfo {
	return CertInfo{Serial: pki.SerialHex(c.SerialNumber), Fingerprint: pki.Fingerprint(c), NotAfter: c.NotAfter.UTC(), KeyID: pki.KeyIDHex(c.SubjectKeyId)}
}
