package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Reissued says what Reissue replaced.
type Reissued struct {
	Role      string    `json:"role"`
	OldSerial string    `json:"oldSerial"`
	NewSerial string    `json:"newSerial"`
	NotAfter  time.Time `json:"notAfter"`
	old       *x509.Certificate
}

// Reissue gives one role a new key and client certificate from the current
// CA (a compromised or revoked role certificate, without rotating the CA).
// The new pair is recorded first in a create-only secret named after the
// old certificate's serial, so two operators, or a re-run after a crash,
// write the same pair; then the key, then the certificate, as new versions
// (the previous ones stay AWSPREVIOUS). Each completed run issues a new
// certificate. Clients get it with `rnx config refresh`.
func (fl *Fleet) Reissue(ctx context.Context, role pki.Role) (*Reissued, error) {
	f := fl.defaults()
	s, err := f.readState(ctx, scope{bothKeys: true, roles: []pki.Role{role}})
	if err != nil {
		return nil, err
	}
	n, vals, st := s.n, s.vals, f.Store
	certName, keyName := n.ClientCert(role), n.ClientKey(role)
	keyPEM, certPEM, pair, old, created, err := f.reissuePair(ctx, s, role)
	if err != nil {
		return nil, err
	}
	if err := f.stillReplacing(ctx, role, old, pair, created); err != nil {
		return nil, err
	}
	// Key first, as everywhere: a reader between the two writes sees a
	// mismatch it reports and re-reads, never a silently wrong pair.
	for _, w := range []struct{ name, value string }{{keyName, keyPEM}, {certName, certPEM}} {
		if vals[w.name] == w.value {
			continue
		}
		if err := st.Put(ctx, w.name, w.value); err != nil {
			return nil, fmt.Errorf("replace %s: %w", w.name, err)
		}
	}
	return &Reissued{Role: string(role), OldSerial: pki.SerialHex(old.SerialNumber), NewSerial: pki.SerialHex(pair.Cert.SerialNumber), NotAfter: pair.Cert.NotAfter.UTC(), old: old}, nil
}

// reissuePair is the new pair of role that replaces its current
// certificate (old): recorded first in a create-only secret named after
// old's serial, so every run that replaces old (two operators, a re-run
// after a crash, a rotation step run again) gets the same pair.
// created is the record's name when this run created it (no run before
// it had), "" when it found the record.
func (f *Fleet) reissuePair(ctx context.Context, s *state, role pki.Role) (keyPEM, certPEM string, pair *pki.CA, old *x509.Certificate, created string, err error) {
	n, st := s.n, f.Store
	ca, err := s.signer(ctx, f)
	if err != nil {
		return "", "", nil, nil, "", err
	}
	old = s.clients[role]
	if old == nil {
		return "", "", nil, nil, "", s.clientErr[role]
	}
	var built string
	rec := n.Reissue(role, old.SerialNumber.Text(16))
	sec := n.Secret(rec, "")
	sec.Description = "Joblet client certificate re-issue record: the " + string(role) + " pair that replaces serial " + old.SerialNumber.Text(16)
	sec.Tags["joblet-content"] = "private-key"
	value, err := claimRecord(ctx, st, sec, func() (string, error) {
		key, err := pki.GenerateKey(f.KeyType, nil)
		if err != nil {
			return "", err
		}
		is, err := ca.IssueClient(key.Public(), role, f.Now(), f.ClientLifetime)
		if err != nil {
			return "", err
		}
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			return "", err
		}
		built = string(keyPEM) + string(pki.EncodeCert(is.Cert))
		return built, nil
	})
	if err != nil {
		return "", "", nil, nil, "", err
	}
	if value == built {
		created = rec
	}
	keyPEM, certPEM, err = splitRecord(value, rec)
	if err != nil {
		return "", "", nil, nil, "", err
	}
	pair, err = parsePair(certPEM, keyPEM, rec, rec)
	if err != nil {
		return "", "", nil, nil, "", err
	}
	return keyPEM, certPEM, pair, old, created, nil
}

// ErrReissuedMeanwhile: the role's certificate changed while a re-issue
// ran (another re-issue completed since it read it); it wrote nothing.
var ErrReissuedMeanwhile = errors.New("another re-issue of this role completed while this one ran")

// stillReplacing checks, just before a re-issue writes, that the role's
// certificate is still the one it replaces (old) or already the pair's:
// a run that read old long before (a laptop asleep mid-run) and found no
// record (pruned, past its grace, after the re-issue completed) made a
// new pair, and writing it would replace the pair that re-issue gave the
// role's users. Or, within the grace, a run that read old while two
// re-issues completed finds the first one's pair: written, it would put
// back a certificate the second one replaced, and perhaps revoked
// (--revoke). It then writes nothing, and removes the record it created
// (created: its name), whose key no one holds.
func (f *Fleet) stillReplacing(ctx context.Context, role pki.Role, old *x509.Certificate, pair *pki.CA, created string) error {
	name := f.names().ClientCert(role)
	got, err := f.Store.Get(ctx, []string{name})
	if err != nil {
		return fmt.Errorf("read %s again before writing: %w", f.where(name), err)
	}
	cur, err := pki.ParseCert([]byte(got[name]))
	if err != nil || cur.Equal(old) || cur.Equal(pair.Cert) {
		return nil // unreadable: the writes replace it, as before
	}
	if rm, ok := f.Store.(secretstore.Remover); ok && created != "" {
		if err := rm.Remove(ctx, created); err != nil {
			f.Log.Warn("the record this run created was not removed; `joblet certs prune` reports it", "secret", created, "error", err)
		}
	}
	return fmt.Errorf("%w: the %s certificate is now serial %s, not %s this run read; nothing written (run it again to re-issue from the current one)",
		ErrReissuedMeanwhile, role, pki.SerialHex(cur.SerialNumber), pki.SerialHex(old.SerialNumber))
}
