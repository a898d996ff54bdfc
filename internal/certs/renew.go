package certs

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// NodeRefresh brings one node's server config up to date with the store.
type NodeRefresh struct {
	ConfigPath string
	Store      secretstore.Store
	Force      bool // renew the server certificate even if not due
	Now        func() time.Time
	// OpenKMS opens the CA's KMS key when the fleet keeps it in KMS (the
	// config's caKmsKeyId, or the store's ca-kms-key after a migration).
	OpenKMS KMSOpener
}

// NodeRefreshResult says what changed.
type NodeRefreshResult struct {
	TrustChanged bool
	Renewed      bool
	Reason       string // why the certificate was renewed
	Serial       string
	NotAfter     time.Time
	Trust        []string // SHA-256 fingerprints of the trusted CAs
}

// RenewalDue says whether a server certificate needs renewing at now, and
// why: expired, not signed by the current CA, or two thirds of its lifetime
// passed (renewal has the last third to succeed, retrying).
func RenewalDue(cert *x509.Certificate, current *x509.Certificate, now time.Time) (bool, string) {
	if !now.Before(cert.NotAfter) {
		return true, "it expired on " + cert.NotAfter.UTC().Format(time.RFC3339)
	}
	if err := cert.CheckSignatureFrom(current); err != nil {
		return true, "it is not signed by the current CA"
	}
	life := cert.NotAfter.Sub(cert.NotBefore)
	if !now.Before(cert.NotBefore.Add(life * 2 / 3)) {
		return true, "two thirds of its lifetime have passed"
	}
	return false, ""
}

// RefreshNode reads the current CA and the trust bundle from the store,
// renews the server certificate when due (or forced) with the same names and
// key type, and rewrites the server config atomically when anything changed.
// On any error nothing is written: the node keeps serving what it has.
func RefreshNode(ctx context.Context, r NodeRefresh) (*NodeRefreshResult, error) {
	if r.Now == nil {
		r.Now = time.Now
	}
	cfg, err := config.LoadServer(r.ConfigPath)
	if err != nil {
		return nil, err
	}
	names := Names{Prefix: cfg.Store.Prefix}
	if cfg.Store.Prefix == "" {
		names.Prefix = "joblet"
	}
	// A KMS-mode node reads the key reference, never the key secret.
	keyName := names.CAKey()
	if cfg.Security.CAKMSKeyID != "" {
		keyName = names.CAKMSKey()
	}
	vals, err := r.Store.Get(ctx, []string{names.CACert(), keyName, names.Bundle(), names.CRL()})
	if err != nil {
		return nil, fmt.Errorf("read the CA from the store: %w", err)
	}
	caCert, err := pki.ParseCert([]byte(vals[names.CACert()]))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, names.CACert(), err)
	}
	trust, err := trustFrom(vals[names.Bundle()], caCert, names.Bundle())
	if err != nil {
		return nil, err
	}
	res := &NodeRefreshResult{}
	for _, c := range trust {
		res.Trust = append(res.Trust, fingerprint(c))
	}
	trustPEM := string(pki.EncodeCerts(trust...))
	revoked, _, err := revokedIn(vals[names.CRL()], trust, names.CRL())
	if err != nil {
		return nil, err
	}
	res.TrustChanged = !samePEMSet(cfg.Security.CACert, trust) || cfg.Security.CRL != vals[names.CRL()]

	leaf, err := pki.ParseCert([]byte(cfg.Security.ServerCert))
	if err != nil {
		return nil, fmt.Errorf("security.serverCert in %s: %w", r.ConfigPath, err)
	}
	now := r.Now()
	due, reason := RenewalDue(leaf, caCert, now)
	if pki.CheckNotRevoked(leaf, revoked) != nil {
		due, reason = true, "it was revoked"
	}
	if r.Force {
		due, reason = true, "renewal was requested"
	}
	res.Serial, res.NotAfter = leaf.SerialNumber.Text(16), leaf.NotAfter
	if due {
		_, lifetime, err := cfg.Durations()
		if err != nil {
			return nil, err
		}
		oldKey, err := pki.ParseKey([]byte(cfg.Security.ServerKey))
		if err != nil {
			return nil, fmt.Errorf("security.serverKey in %s: %w", r.ConfigPath, err)
		}
		key, err := pki.GenerateKey(keyTypeOf(oldKey), nil)
		if err != nil {
			return nil, err
		}
		signer, kmsID, err := r.signer(ctx, cfg, names, caCert, vals)
		if err != nil {
			return nil, err
		}
		cfg.Security.CAKMSKeyID = kmsID
		ca := pki.CA{Cert: caCert, Key: signer}
		is, err := ca.IssueServer(key.Public(), pki.SANs{DNS: leaf.DNSNames, IPs: leaf.IPAddresses}, now, lifetime)
		if err != nil {
			return nil, fmt.Errorf("renew the server certificate: %w", err)
		}
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			return nil, err
		}
		cfg.Security.ServerCert, cfg.Security.ServerKey = string(pki.EncodeCert(is.Cert)), string(keyPEM)
		res.Renewed, res.Reason = true, reason
		res.Serial, res.NotAfter = is.Cert.SerialNumber.Text(16), is.Cert.NotAfter
	}
	if !res.Renewed && !res.TrustChanged {
		return res, nil
	}
	cfg.Security.CACert = trustPEM
	cfg.Security.CRL = vals[names.CRL()]
	b, err := cfg.Marshal()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.WriteFile(r.ConfigPath, b, 0o600); err != nil {
		return nil, err
	}
	return res, nil
}

// signer finds the current CA's key: the stored ca-key, or the KMS key the
// config or the store's ca-kms-key names. During a stage move the CA
// certificate and its key may briefly disagree: the error says so, and the
// next refresh retries.
func (r NodeRefresh) signer(ctx context.Context, cfg *config.Server, names Names, caCert *x509.Certificate, vals map[string]string) (crypto.Signer, string, error) {
	if cfg.Security.CAKMSKeyID != "" {
		return caSigner(ctx, caCert, nil, []string{vals[names.CAKMSKey()], cfg.Security.CAKMSKeyID}, r.OpenKMS, names)
	}
	keyPEM := vals[names.CAKey()]
	if key, err := pki.ParseKey([]byte(keyPEM)); err == nil && samePublicKey(caCert, key) {
		return key, "", nil
	}
	// Not the stored key: the fleet may have moved its CA to KMS.
	got, err := r.Store.Get(ctx, []string{names.CAKMSKey()})
	if err != nil {
		return nil, "", fmt.Errorf("read %s: %w", names.CAKMSKey(), err)
	}
	return caSigner(ctx, caCert, []string{keyPEM}, []string{got[names.CAKMSKey()]}, r.OpenKMS, names)
}

func keyTypeOf(k any) pki.KeyType {
	if rk, ok := k.(*rsa.PrivateKey); ok {
		if rk.N.BitLen() > 2048 {
			return pki.RSA4096
		}
		return pki.RSA2048
	}
	if _, ok := k.(*ecdsa.PrivateKey); ok {
		return pki.ECDSAP256
	}
	return pki.ECDSAP256
}

// samePEMSet reports whether the PEM bundle holds exactly certs.
func samePEMSet(bundle string, certs []*x509.Certificate) bool {
	have, err := pki.ParseCerts([]byte(bundle))
	if err != nil || len(have) != len(certs) {
		return false
	}
	for _, c := range certs {
		found := false
		for _, h := range have {
			found = found || h.Equal(c)
		}
		if !found {
			return false
		}
	}
	return true
}
