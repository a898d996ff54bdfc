package certs

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"sync"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// RefreshCache remembers what a node's last full refresh read, so the next
// refresh first asks the store whether anything it watches changed
// (Store.Versions: one ListSecrets call in Secrets Manager) and reads
// nothing more when nothing did, and the node's own config and clock give
// no reason to renew. A fleet at rest then costs one call per node per
// refresh instead of one per secret. The zero value is ready; one per
// running node.
type RefreshCache struct {
	mu       sync.Mutex
	versions map[string]string // of the watched secrets, taken before the last full read
	config   [32]byte          // the server config as the last refresh left it
	ca       *x509.Certificate // the CA the node's certificate is due from, as that read found it
	last     NodeRefreshResult // what that refresh reported
	// noVersions: the store refused Versions (a policy without
	// secretsmanager:ListSecrets); every refresh reads in full.
	noVersions bool
	// historyRead: this process looked once at the history of the trust
	// state and the CRL (nodehistory.go), or the store cannot show it.
	historyRead bool
}

// check asks the store for the versions of the watched names. It returns
// them (to remember after the full read that follows), or, when nothing
// changed since the last full read, neither in the store nor in the
// node's config, and the server certificate is not due, the result to
// report without reading anything. A store that cannot answer fails the
// refresh now (the next one retries) rather than after a full read too.
func (c *RefreshCache) check(ctx context.Context, f *Fleet, watched []string, raw []byte, cfg *config.Server, force bool) (map[string]string, *NodeRefreshResult, error) {
	if c.noVersions || force {
		return nil, nil, nil
	}
	v, err := f.Store.Versions(ctx, watched)
	switch {
	case errors.Is(err, secretstore.ErrAccessDenied):
		c.noVersions = true
		f.Log.Info("the store does not allow asking what changed; every refresh reads all it watches (allow secretsmanager:ListSecrets to make a refresh at rest one call)", "cause", err)
		return nil, nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("ask %s what changed: %w", f.StoreDesc, err)
	}
	if c.versions == nil || c.ca == nil || !maps.Equal(v, c.versions) || sha256.Sum256(raw) != c.config {
		return v, nil, nil
	}
	leaf, _, err := pki.ParseChain([]byte(cfg.Security.ServerCert))
	if err != nil {
		return v, nil, nil
	}
	if due, _ := pki.RenewalDue(leaf, c.ca, f.Now()); due {
		return v, nil, nil
	}
	res := c.last
	res.TrustChanged, res.Renewed, res.ChainChanged, res.Reason = false, false, false, ""
	res.Trust = append([]string(nil), c.last.Trust...)
	return nil, &res, nil
}

// remember records a full refresh: the versions taken before its read (a
// write between the two only makes the next refresh read again), the
// config it left, the CA it found and what it reported.
func (c *RefreshCache) remember(versions map[string]string, cfgWritten []byte, ca *x509.Certificate, res *NodeRefreshResult) {
	c.versions, c.config, c.ca, c.last = versions, sha256.Sum256(cfgWritten), ca, *res
}
