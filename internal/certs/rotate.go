package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Phases of a CA rotation. The phase is derived from the store, never kept
// apart from it: a pending CA means begun; two trusted CAs and no pending
// one means promoted; otherwise stable.
const (
	PhaseStable   = "stable"
	PhaseBegun    = "begun"    // new CA pending and trusted; the old one signs
	PhasePromoted = "promoted" // new CA signs; the old one is still trusted
)

// Rotation runs the staged CA rotation against a store. Every step is
// idempotent: re-running it after a crash, or two operators running it at
// once, ends in the same state.
type Rotation struct {
	Store          secretstore.Store
	Prefix         string
	KeyType        pki.KeyType
	CALifetime     time.Duration
	ClientLifetime time.Duration
	Now            func() time.Time
	// CAKMSKeyID makes the CA that begin creates a KMS CA: its key is this
	// AWS KMS key (a fleet moves from ca-key to KMS this way).
	CAKMSKeyID string
	// OpenKMS opens KMS keys: the new one, and those the store names.
	OpenKMS KMSOpener
}

// CAInfo describes one CA certificate.
type CAInfo struct {
	Serial      string    `json:"serial"`
	Fingerprint string    `json:"sha256"`
	NotAfter    time.Time `json:"notAfter"`
}

// RotationStatus is the fleet's rotation state as the store holds it.
type RotationStatus struct {
	Phase   string   `json:"phase"`
	Current CAInfo   `json:"current"`
	Pending *CAInfo  `json:"pending,omitempty"`
	Trusted []CAInfo `json:"trusted"`
	// CurrentKey and PendingKey say where each CA's key is.
	CurrentKey string            `json:"currentKey"`
	PendingKey string            `json:"pendingKey,omitempty"`
	Clients    map[string]string `json:"clientIssuers"` // role -> "current" or the issuer's key id
	NextStep   string            `json:"nextStep"`
	Nodes      []NodeReport      `json:"nodes,omitempty"`
}

// NodeReport is what a node said about the certificate it serves.
type NodeReport struct {
	Address      string `json:"address"`
	NodeID       string `json:"nodeId,omitempty"`
	IssuerSHA256 string `json:"issuerSha256,omitempty"`
	Current      bool   `json:"fromCurrentCA"`
	Summary      string `json:"summary"`
}

func caInfo(c *x509.Certificate) CAInfo {
	return CAInfo{Serial: c.SerialNumber.Text(16), Fingerprint: fingerprint(c), NotAfter: c.NotAfter.UTC()}
}

func (r *Rotation) defaults() Names {
	if r.Now == nil {
		r.Now = time.Now
	}
	if r.KeyType == "" {
		r.KeyType = pki.ECDSAP256
	}
	if r.CALifetime == 0 {
		r.CALifetime = pki.DefaultCALifetime
	}
	if r.ClientLifetime == 0 {
		r.ClientLifetime = pki.DefaultClientLifetime
	}
	if r.Prefix == "" {
		r.Prefix = "joblet"
	}
	return Names{Prefix: r.Prefix}
}

// state is what the steps read: the current CA pair, the pending one (if
// any), the trust bundle and the role pairs.
type state struct {
	current, pending *pki.CA
	trust            []*x509.Certificate
	clients          map[pki.Role]*x509.Certificate
	clientKeys       map[pki.Role]string
	phase            string
	// halfBegun: a begin was interrupted between writing the pending key
	// and the pending certificate; re-running begin completes it.
	halfBegun bool
	vals      map[string]string // the current values read
}

func (r *Rotation) read(ctx context.Context) (*state, error) {
	n := r.defaults()
	vals, err := r.Store.Get(ctx, append(n.All(), n.CAKMSKey(), n.Bundle()))
	if err != nil {
		return nil, fmt.Errorf("read the shared certificates: %w", err)
	}
	cur, err := currentCA(ctx, vals, n, r.OpenKMS)
	if err != nil {
		return nil, err
	}
	s := &state{current: cur, clients: map[pki.Role]*x509.Certificate{}, clientKeys: map[pki.Role]string{}, vals: vals}
	if s.trust, err = trustFrom(vals[n.Bundle()], cur.Cert, n.Bundle()); err != nil {
		return nil, err
	}
	keyNames := []string{n.CACert(), n.CAKey(), n.CAKMSKey()}
	pend, err := r.Store.GetStage(ctx, keyNames, secretstore.Pending)
	if err != nil {
		return nil, fmt.Errorf("read the pending CA: %w", err)
	}
	// A pending label on the current value is left over from a promote
	// interrupted between moving AWSCURRENT and removing AWSPENDING.
	for _, name := range keyNames {
		if pend[name] == vals[name] {
			delete(pend, name)
		}
	}
	switch {
	case pend[n.CACert()] != "":
		c, err := pki.ParseCert([]byte(pend[n.CACert()]))
		if err != nil {
			return nil, fmt.Errorf("%w: %s (AWSPENDING): %v", ErrInconsistentStore, n.CACert(), err)
		}
		// The pending CA's key: a pending ca-key, or a KMS key named by
		// ca-kms-key (pending, or current when begin created it).
		key, _, err := caSigner(ctx, c, []string{pend[n.CAKey()]}, []string{pend[n.CAKMSKey()], vals[n.CAKMSKey()]}, r.OpenKMS, n)
		if err != nil {
			return nil, fmt.Errorf("the pending CA: %w", err)
		}
		s.pending = &pki.CA{Cert: c, Key: key}
	case pend[n.CAKey()] != "" || pend[n.CAKMSKey()] != "":
		s.halfBegun = true
	}
	for _, role := range pki.Roles {
		c, err := pki.ParseCert([]byte(vals[n.ClientCert(role)]))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, n.ClientCert(role), err)
		}
		s.clients[role], s.clientKeys[role] = c, vals[n.ClientKey(role)]
	}
	switch {
	case s.pending != nil || s.halfBegun:
		s.phase = PhaseBegun
	case len(s.trust) > 1:
		s.phase = PhasePromoted
	default:
		s.phase = PhaseStable
	}
	return s, nil
}

// keyPlace names where a CA's key is.
func keyPlace(ca *pki.CA, n Names) string {
	if k, ok := ca.Key.(KMSKey); ok {
		return "AWS KMS key " + k.KeyID()
	}
	return "store (" + n.CAKey() + ")"
}

func parsePair(certPEM, keyPEM, certName, keyName string) (*pki.CA, error) {
	c, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, certName, err)
	}
	k, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, keyName, err)
	}
	if err := pki.MatchesKey(c, k); err != nil {
		return nil, fmt.Errorf("%w: %s is not the certificate of %s", ErrInconsistentStore, certName, keyName)
	}
	return &pki.CA{Cert: c, Key: k}, nil
}

// Status reports the phase, the CAs and what to do next.
func (r *Rotation) Status(ctx context.Context) (*RotationStatus, error) {
	s, err := r.read(ctx)
	if err != nil {
		return nil, err
	}
	n := r.defaults()
	st := &RotationStatus{Phase: s.phase, Current: caInfo(s.current.Cert), Clients: map[string]string{}, CurrentKey: keyPlace(s.current, n)}
	if s.pending != nil {
		p := caInfo(s.pending.Cert)
		st.Pending = &p
		st.PendingKey = keyPlace(s.pending, n)
	}
	for _, c := range s.trust {
		st.Trusted = append(st.Trusted, caInfo(c))
	}
	for role, c := range s.clients {
		if c.CheckSignatureFrom(s.current.Cert) == nil {
			st.Clients[string(role)] = "current"
		} else {
			st.Clients[string(role)] = "other CA (" + hexKeyID(c.AuthorityKeyId) + ")"
		}
	}
	switch {
	case s.halfBegun:
		st.NextStep = "a `rotate-ca begin` was interrupted: run it again to complete it"
	case s.phase == PhaseStable:
		st.NextStep = "nothing to do; `rotate-ca begin` starts a rotation"
	case s.phase == PhaseBegun:
		st.NextStep = "hand out refreshed client configs (`rnx config refresh`), wait for every node to refresh its trust, then `rotate-ca promote` (or `rotate-ca abort`)"
	case s.phase == PhasePromoted:
		st.NextStep = "refresh client configs again (new client certificates), wait until every node serves a certificate from the new CA, then `rotate-ca finish` (or `rotate-ca abort`)"
	}
	return st, nil
}

func hexKeyID(b []byte) string {
	var sb strings.Builder
	for i, x := range b {
		if i > 0 {
			sb.WriteByte(':')
		}
		fmt.Fprintf(&sb, "%02x", x)
	}
	return sb.String()
}

// Begin stores a new CA as the pending version of ca-key and ca-cert and
// makes every trust bundle hold both CAs. The new CA is agreed on through a
// create-only record named after the current CA, so two operators (or a
// re-run after a crash) end with the same one.
func (r *Rotation) Begin(ctx context.Context) (*RotationStatus, error) {
	n := r.defaults()
	s, err := r.read(ctx)
	if err != nil {
		return nil, err
	}
	if s.phase == PhasePromoted {
		return nil, fmt.Errorf("a rotation is already promoted: run `rotate-ca finish` (or `rotate-ca abort`) before beginning another")
	}
	if _, kms := s.current.Key.(KMSKey); kms && r.CAKMSKeyID == "" && s.pending == nil {
		return nil, fmt.Errorf("%w: this fleet's CA key is in AWS KMS: the new CA needs a new KMS key too (--ca-kms-key-id NEW_KEY); moving back to a key kept in the store is not supported", ErrCAMode)
	}
	next := s.pending
	if next == nil {
		if next, err = r.claimNext(ctx, n, s.current); err != nil {
			return nil, err
		}
	}
	// Key (or key reference) before certificate, as in bootstrap.
	if k, ok := next.Key.(KMSKey); ok {
		switch cur := s.vals[n.CAKMSKey()]; {
		case cur == "":
			// The first KMS CA of a fleet: the reference is created
			// current; it signs nothing until its certificate is promoted
			// (the signer is whichever key matches the current ca-cert).
			if err := r.Store.Create(ctx, n.Secret(n.CAKMSKey(), k.KeyID())); err != nil && !errors.Is(err, secretstore.ErrExist) {
				return nil, err
			}
		case cur != k.KeyID():
			if err := r.Store.PutPending(ctx, n.CAKMSKey(), k.KeyID()); err != nil {
				return nil, err
			}
		}
	} else {
		keyPEM, err := pki.EncodeKey(next.Key)
		if err != nil {
			return nil, err
		}
		if err := r.Store.PutPending(ctx, n.CAKey(), string(keyPEM)); err != nil {
			return nil, err
		}
	}
	if err := r.Store.PutPending(ctx, n.CACert(), string(pki.EncodeCert(next.Cert))); err != nil {
		return nil, err
	}
	if err := r.setTrust(ctx, n, s.trust, s.current.Cert, next.Cert); err != nil {
		return nil, err
	}
	return r.Status(ctx)
}

// claimNext returns the CA recorded to replace current, creating it when
// this is the first run of the rotation. The record holds the new CA's
// certificate and its key, or for a KMS CA the line "kms-key ARN".
func (r *Rotation) claimNext(ctx context.Context, n Names, current *pki.CA) (*pki.CA, error) {
	name := n.Rotation(current.Cert.SerialNumber.Text(16))
	var kms KMSKey
	if r.CAKMSKeyID != "" {
		if r.OpenKMS == nil {
			return nil, fmt.Errorf("%w: --ca-kms-key-id needs AWS (Secrets Manager mode)", ErrUsage)
		}
		var err error
		if kms, err = r.OpenKMS(ctx, r.CAKMSKeyID); err != nil {
			return nil, fmt.Errorf("open the new CA's KMS key: %w", err)
		}
		if samePublicKey(current.Cert, kms) {
			return nil, fmt.Errorf("%w: KMS key %s is the current CA's key: the new CA needs another key", ErrUsage, kms.KeyID())
		}
	}
	sec := n.Secret(name, "")
	sec.Description = "Joblet CA rotation record: the CA that replaces serial " + current.Cert.SerialNumber.Text(16)
	sec.Tags["joblet-content"] = "private-key"
	if kms != nil {
		sec.Tags["joblet-content"] = "kms-key-reference"
	}
	rec, err := claimRecord(ctx, r.Store, sec, func() (string, error) {
		var key crypto.Signer = kms
		var head string
		if kms != nil {
			head = kmsRecordPrefix + kms.KeyID() + "\n"
		} else {
			k, err := pki.GenerateKey(r.KeyType, nil)
			if err != nil {
				return "", err
			}
			keyPEM, err := pki.EncodeKey(k)
			if err != nil {
				return "", err
			}
			key, head = k, string(keyPEM)
		}
		cert, err := pki.NewCA(key, r.Now(), r.CALifetime)
		if err != nil {
			return "", err
		}
		return head + string(pki.EncodeCert(cert)), nil
	})
	if err != nil {
		return nil, err
	}
	head, certPEM, err := splitRecord(rec, name)
	if err != nil {
		return nil, err
	}
	if ref, ok := strings.CutPrefix(head, kmsRecordPrefix); ok {
		ref = strings.TrimSpace(ref)
		if kms != nil && kms.KeyID() != ref {
			return nil, fmt.Errorf("%w: a rotation to KMS key %s was begun (%s), not to %s: run `rotate-ca abort` first to change the new CA's key", ErrUsage, ref, name, kms.KeyID())
		}
		c, err := pki.ParseCert([]byte(certPEM))
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, name, err)
		}
		key, _, err := caSigner(ctx, c, nil, []string{ref}, r.OpenKMS, n)
		if err != nil {
			return nil, err
		}
		return &pki.CA{Cert: c, Key: key}, nil
	}
	if kms != nil {
		return nil, fmt.Errorf("%w: a rotation to a CA with its key in the store was begun (%s): run `rotate-ca abort` first to rotate to a KMS key", ErrUsage, name)
	}
	return parsePair(certPEM, head, name, name)
}

// kmsRecordPrefix starts a rotation record whose CA key is in KMS.
const kmsRecordPrefix = "kms-key "

// setTrust writes the bundle of the given CAs when it differs.
func (r *Rotation) setTrust(ctx context.Context, n Names, have []*x509.Certificate, want ...*x509.Certificate) error {
	pem := string(pki.EncodeCerts(want...))
	if len(have) == len(want) && samePEMSet(pem, have) {
		vals, err := r.Store.Get(ctx, []string{n.Bundle()})
		if err == nil && vals[n.Bundle()] != "" {
			return nil
		}
	}
	return putOrCreate(ctx, r.Store, n, n.Bundle(), pem)
}

// Promote makes the pending CA current (the old one becomes AWSPREVIOUS and
// stays trusted) and re-issues every role's client certificate from it,
// for the same key. Nodes renew their server certificates on their next
// refresh, since theirs are no longer signed by the current CA.
func (r *Rotation) Promote(ctx context.Context) (*RotationStatus, error) {
	n := r.defaults()
	s, err := r.read(ctx)
	if err != nil && !errors.Is(err, ErrInconsistentStore) {
		return nil, err
	}
	if s != nil && s.phase == PhaseStable {
		return nil, fmt.Errorf("no rotation in progress: run `rotate-ca begin` first")
	}
	if s != nil && s.halfBegun {
		return nil, fmt.Errorf("a `rotate-ca begin` was interrupted: run it again before promoting")
	}
	// Certificate first: a crash between the two moves leaves the new
	// certificate current with the old key pending, which read reports and
	// this re-run completes. Promoting what is already promoted only clears
	// leftover pending labels.
	return r.moveCA(ctx, n, r.Store.Promote, secretstore.Pending)
}

// moveCA applies a label move to the CA certificate, then brings the key
// secrets in line with it: ca-key and ca-kms-key move only when the version
// the move would make current is the key of the certificate now current
// (during a move to KMS, ca-key stays as it is). Then it re-issues the role
// client certificates from whichever CA is current. Re-running it after a
// crash between the moves completes them.
func (r *Rotation) moveCA(ctx context.Context, n Names, move func(context.Context, string) error, from secretstore.Stage) (*RotationStatus, error) {
	if err := move(ctx, n.CACert()); err != nil {
		return nil, err
	}
	if err := r.alignKeys(ctx, n, move, from); err != nil {
		return nil, err
	}
	s, err := r.read(ctx)
	if err != nil {
		return nil, err
	}
	if err := r.reissueClients(ctx, n, s, s.current); err != nil {
		return nil, err
	}
	return r.Status(ctx)
}

// alignKeys moves the labels of ca-key and ca-kms-key (by move, from the
// stage from) when the version it would make current is the key of the
// current CA certificate, and leaves them alone otherwise.
func (r *Rotation) alignKeys(ctx context.Context, n Names, move func(context.Context, string) error, from secretstore.Stage) error {
	cur, err := r.Store.Get(ctx, []string{n.CACert(), n.CAKey(), n.CAKMSKey()})
	if err != nil {
		return err
	}
	cert, err := pki.ParseCert([]byte(cur[n.CACert()]))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrInconsistentStore, n.CACert(), err)
	}
	other, err := r.Store.GetStage(ctx, []string{n.CAKey(), n.CAKMSKey()}, from)
	if err != nil {
		return err
	}
	for _, name := range []string{n.CAKey(), n.CAKMSKey()} {
		if other[name] == "" || other[name] == cur[name] {
			continue
		}
		var keys, refs []string
		if name == n.CAKey() {
			keys = []string{other[name]}
		} else {
			refs = []string{other[name]}
		}
		if _, _, err := caSigner(ctx, cert, keys, refs, r.OpenKMS, n); err != nil {
			continue // not this certificate's key: leave its labels alone
		}
		if err := move(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// reissueClients gives every role a certificate from ca for its existing key
// (so two operators re-issuing at once still leave matching pairs).
func (r *Rotation) reissueClients(ctx context.Context, n Names, s *state, ca *pki.CA) error {
	for _, role := range pki.Roles {
		if s.clients[role].CheckSignatureFrom(ca.Cert) == nil {
			continue
		}
		key, err := pki.ParseKey([]byte(s.clientKeys[role]))
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrInconsistentStore, n.ClientKey(role), err)
		}
		is, err := ca.IssueClient(key.Public(), role, r.Now(), r.ClientLifetime)
		if err != nil {
			return err
		}
		if err := r.Store.Put(ctx, n.ClientCert(role), string(pki.EncodeCert(is.Cert))); err != nil {
			return err
		}
	}
	return nil
}

// Finish removes the old CA from the trust bundle: a certificate signed only
// by it is refused once nodes refresh.
func (r *Rotation) Finish(ctx context.Context) (*RotationStatus, error) {
	n := r.defaults()
	s, err := r.read(ctx)
	if err != nil {
		return nil, err
	}
	switch s.phase {
	case PhaseBegun:
		return nil, fmt.Errorf("the new CA is still pending: run `rotate-ca promote` first")
	case PhaseStable:
		return r.Status(ctx) // already finished
	}
	if err := r.reissueClients(ctx, n, s, s.current); err != nil {
		return nil, err
	}
	if err := r.setTrust(ctx, n, s.trust, s.current.Cert); err != nil {
		return nil, err
	}
	return r.Status(ctx)
}

// Abort steps back one phase. From begun it drops the pending CA and
// trusts the current one alone. From promoted it makes the old CA current
// again (the new one pending, both still trusted) and re-issues client
// certificates from it; nodes renew back on their next refresh, and a
// second abort then drops the new CA.
func (r *Rotation) Abort(ctx context.Context) (*RotationStatus, error) {
	n := r.defaults()
	s, err := r.read(ctx)
	if errors.Is(err, ErrInconsistentStore) {
		// An abort interrupted between demoting the certificate and its
		// key: finish demoting the key, then carry on from there.
		if err := r.alignKeys(ctx, n, r.Store.Demote, secretstore.Previous); err != nil {
			return nil, err
		}
		if s, err = r.read(ctx); err != nil {
			return nil, err
		}
		if err := r.reissueClients(ctx, n, s, s.current); err != nil {
			return nil, err
		}
		return r.Status(ctx) // that abort is now complete
	}
	if err != nil {
		return nil, err
	}
	switch s.phase {
	case PhaseStable:
		return nil, fmt.Errorf("no rotation in progress")
	case PhaseBegun:
		for _, name := range []string{n.CACert(), n.CAKey(), n.CAKMSKey()} {
			if s.vals[name] == "" {
				continue // no such secret in this fleet's mode
			}
			if err := r.Store.DropPending(ctx, name); err != nil {
				return nil, err
			}
		}
		if err := r.setTrust(ctx, n, s.trust, s.current.Cert); err != nil {
			return nil, err
		}
		return r.Status(ctx)
	}
	return r.moveCA(ctx, n, r.Store.Demote, secretstore.Previous)
}
