package certs

// The operator's own floor. The store's version history catches an older
// trust state put back, but someone allowed to delete the secret (and
// create it again) erases the history with it. So an operator's commands
// also keep, on the machine they run on, the newest trust state they
// verified for each fleet, and act on it when the store offers only older
// ones: the way a node or an rnx keeps the state it holds. A record that
// does not verify from the fleet's anchors (another fleet's, or junk) is
// ignored.

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"os"
	"path/filepath"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/pki"
)

// seenPath is the record of this fleet (its store and prefix).
func (f *Fleet) seenPath() string {
	sum := sha256.Sum256([]byte(f.StoreDesc + "\x00" + f.Prefix))
	return filepath.Join(f.SeenDir, "trust-"+hex.EncodeToString(sum[:8])+".json")
}

// seenState is the recorded state, verified from anchors, or nil.
func (f *Fleet) seenState(anchors []*x509.Certificate, revoked map[string]bool) (*pki.TrustState, string) {
	if f.SeenDir == "" {
		return nil, ""
	}
	raw, err := os.ReadFile(f.seenPath())
	if err != nil {
		return nil, ""
	}
	t, err := pki.VerifyTrust(raw, f.Prefix, anchors, nil, revoked)
	if err != nil {
		return nil, ""
	}
	return t, string(raw)
}

// rememberSeen records doc (raw, its envelope) when it is newer than the
// record; best effort: an operator's command never fails for it.
func (f *Fleet) rememberSeen(doc *pki.TrustState, raw string) {
	if f.SeenDir == "" || doc == nil || raw == "" {
		return
	}
	if old, err := os.ReadFile(f.seenPath()); err == nil {
		if t, err := pki.PeekTrust(old, f.Prefix); err == nil && t.Version >= doc.Version {
			return
		}
	}
	if err := os.MkdirAll(f.SeenDir, 0o700); err != nil {
		f.Log.Debug("could not keep the trust state seen", "error", err)
		return
	}
	if err := atomicfile.WriteFile(f.seenPath(), []byte(raw), 0o600); err != nil {
		f.Log.Debug("could not keep the trust state seen", "error", err)
	}
}
