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

// RotationStatus is the fleet's rotation state as the store holds it.
type RotationStatus struct {
	Phase Phase `json:"phase"`
	// Interrupted: a `rotate-ca begin` stopped between its key and its
	// certificate; NextStep says how to complete it.
	Interrupted bool       `json:"interrupted,omitempty"`
	Current     CertInfo   `json:"current"`
	Pending     *CertInfo  `json:"pending,omitempty"`
	Trusted     []CertInfo `json:"trusted"`
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
	// OldCAClients: client certificates of the outgoing CA the node
	// verified within the window asked for, and the last time it did.
	OldCAClients  int64     `json:"oldCaClientHandshakes,omitempty"`
	OldCALastSeen time.Time `json:"oldCaClientLastSeen,omitzero"`
	// TrustsPendingCA: during a rotation's begun phase, whether the node
	// already accepts the pending CA (nil when not asked or unknown).
	TrustsPendingCA *bool  `json:"trustsPendingCa,omitempty"`
	Summary         string `json:"summary"`
}

// rotation is what the steps work on: the state an operator reads (both
// CA key secrets, every role, the pending versions) with both CAs' signers.
type rotation struct {
	*state
	current, pending *pki.CA
	clientKeys       map[pki.Role]string
}

// operatorScope is what the rotation steps read.
var operatorScope = func() scope {
	sc := wholeScope
	sc.pending, sc.allPending = true, true
	return sc
}()

func (f *Fleet) readRotation(ctx context.Context) (*rotation, error) {
	if err := f.adoptLegacyPending(ctx); err != nil {
		return nil, err
	}
	s, err := f.readState(ctx, operatorScope)
	if err != nil {
		return nil, err
	}
	n := s.n
	cur, err := s.signer(ctx, f)
	if err != nil {
		return nil, err
	}
	if s.trustErr != nil {
		return nil, s.trustErr
	}
	r := &rotation{state: s, current: cur, clientKeys: map[pki.Role]string{}}
	if pem := s.pending[n.CACert()]; pem != "" {
		c, err := pki.ParseCert([]byte(pem))
		if err != nil {
			return nil, fmt.Errorf("%w: %s (%s): %v", ErrInconsistentStore, n.CACert(), secretstore.Pending, err)
		}
		// The pending CA's key: a pending ca-key, or a KMS key named by
		// ca-kms-key (pending, or current when begin created it).
		key, _, err := f.caSigner(ctx, c, []string{s.pending[n.CAKey()]}, []CAKeyRef{f.kmsKey(s.pending[n.CAKMSKey()]), s.caKey})
		if errors.Is(err, ErrInconsistentStore) {
			// The pending version of ca-key is not this CA's key (written
			// without the root key, say): the rotation record, which the
			// current root vouched for, holds it, and begin or promote
			// stages it again (restageKey).
			if k := f.recordKey(ctx, n, cur, c); k != nil {
				key, err = k, nil
			}
		}
		if err != nil {
			return nil, fmt.Errorf("the pending CA: %w", err)
		}
		r.pending = &pki.CA{Cert: c, Key: key}
	}
	for _, role := range pki.Roles {
		if err := s.clientErr[role]; err != nil {
			return nil, err
		}
		r.clientKeys[role] = s.vals[n.ClientKey(role)]
	}
	return r, nil
}

// recordKey is the key of the pending CA certificate c as the rotation
// record of current holds it (a record the current root cross-signed), or
// nil: read only, never creating the record.
func (f *Fleet) recordKey(ctx context.Context, n Names, current *pki.CA, c *x509.Certificate) crypto.Signer {
	name := n.Rotation(current.Cert.SerialNumber.Text(16))
	got, err := f.Store.Get(ctx, []string{name})
	if err != nil || got[name] == "" {
		return nil
	}
	head, certPEM, err := splitRecord(got[name], name)
	if err != nil || strings.HasPrefix(head, kmsRecordPrefix) {
		return nil
	}
	if certPEM, err = vouchedRecord(certPEM, current.Cert, name, n); err != nil {
		return nil
	}
	ca, err := parsePair(certPEM, head, name, name)
	if err != nil || !ca.Cert.Equal(c) {
		return nil
	}
	return ca.Key
}

// restageKey makes the pending version of ca-key the pending CA's key when
// it is not (readRotation took it from the rotation record): before a
// promote moves the certificate, so that the key follows it.
func (f *Fleet) restageKey(ctx context.Context, s *rotation) error {
	if s.pending == nil {
		return nil
	}
	if _, kms := s.pending.Key.(KMSKey); kms {
		return nil
	}
	n := s.n
	if k, err := pki.ParseKey([]byte(s.state.pending[n.CAKey()])); err == nil && samePublicKey(s.pending.Cert, k) {
		return nil
	}
	keyPEM, err := pki.EncodeKey(s.pending.Key)
	if err != nil {
		return err
	}
	f.Log.Warn("the pending version of "+n.CAKey()+" was not the pending CA's key (written without the root key?): staged again from the rotation record", "pendingCA", pki.Fingerprint(s.pending.Cert))
	return f.Store.PutPending(ctx, n.CAKey(), string(keyPEM))
}

// adoptLegacyPending moves a rotation begun before the staged label had a
// name of its own (secretstore.Pending) onto it, so that it no longer
// reads as a Secrets Manager rotation in progress (which stops the
// secret's schedule) and the steps find it. The rotation's secrets only:
// the CA certificate, both key places and the roles' certificates.
func (f *Fleet) adoptLegacyPending(ctx context.Context) error {
	a, ok := f.Store.(secretstore.PendingAdopter)
	if !ok {
		return nil
	}
	n := f.names()
	names := []string{n.CACert(), n.CAKey(), n.CAKMSKey()}
	for _, r := range pki.Roles {
		names = append(names, n.ClientCert(r))
	}
	moved, err := a.AdoptLegacyPending(ctx, names)
	if err != nil {
		return fmt.Errorf("move a begun rotation's label from AWSPENDING to %s (needs secretsmanager:UpdateSecretVersionStage, as every rotate-ca step): %w", secretstore.Pending, err)
	}
	if len(moved) > 0 {
		f.Log.Info("a rotation begun by an earlier version: its pending versions are labelled "+string(secretstore.Pending)+" now (AWSPENDING is Secrets Manager's own rotation)", "secrets", moved)
	}
	return nil
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
		return nil, inconsistent(certName, err)
	}
	k, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		return nil, inconsistent(keyName, err)
	}
	if err := pki.MatchesKey(c, k); err != nil {
		return nil, fmt.Errorf("%w: %s is not the certificate of %s", ErrInconsistentStore, certName, keyName)
	}
	return &pki.CA{Cert: c, Key: k}, nil
}

// RotationStatus reports the phase, the CAs and what to do next.
func (fl *Fleet) RotationStatus(ctx context.Context) (*RotationStatus, error) {
	f := fl.defaults()
	r, err := f.readRotation(ctx)
	if err != nil {
		return nil, err
	}
	n := r.n
	st := &RotationStatus{Phase: r.phase, Interrupted: r.interrupted, Current: infoOf(r.current.Cert), Clients: map[string]string{}, CurrentKey: keyPlace(r.current, n)}
	if r.pending != nil {
		p := infoOf(r.pending.Cert)
		st.Pending = &p
		st.PendingKey = keyPlace(r.pending, n)
	}
	for _, c := range r.trust {
		st.Trusted = append(st.Trusted, infoOf(c))
	}
	for role, c := range r.clients {
		if c.CheckSignatureFrom(r.current.Cert) == nil {
			st.Clients[string(role)] = "current"
		} else {
			st.Clients[string(role)] = "other CA (" + pki.KeyIDHex(c.AuthorityKeyId) + ")"
		}
	}
	st.NextStep = nextStep(r.phase, r.interrupted)
	return st, nil
}

// nextStep is what an operator does next in a phase; rotate-ca and
// certs status show the same text.
func nextStep(p Phase, interrupted bool) string {
	switch {
	case interrupted:
		return "a `rotate-ca begin` was interrupted: run it again to complete it"
	case p == PhaseBegun:
		return "wait one refresh interval for every node to trust both CAs, then `rotate-ca promote` (or `rotate-ca abort`); every client refreshes once (`rnx config refresh`) any time before finish (docs/ROTATION.md)"
	case p == PhasePromoted:
		return "when every node serves a certificate from the new CA and every client has refreshed once (`rnx config refresh`), `rotate-ca finish --nodes ...` (or `rotate-ca abort`)"
	}
	return "nothing to do; `rotate-ca begin` starts a rotation"
}

// BeginRotation stores a new CA as the pending version of ca-key and ca-cert and
// makes every trust bundle hold both CAs. The new CA is agreed on through a
// create-only record named after the current CA, so two operators (or a
// re-run after a crash) end with the same one. newKey, when in KMS, makes
// the new CA's key that AWS KMS key (how a fleet moves its CA into KMS).
func (fl *Fleet) BeginRotation(ctx context.Context, newKey CAKeyRef) (*RotationStatus, error) {
	f := fl.defaults()
	s, err := f.readRotation(ctx)
	if err != nil {
		return nil, err
	}
	n := s.n
	if s.phase == PhasePromoted {
		return nil, fmt.Errorf("a rotation is already promoted: run `rotate-ca finish` (or `rotate-ca abort`) before beginning another")
	}
	if _, kms := s.current.Key.(KMSKey); kms && !newKey.InKMS() && s.pending == nil {
		return nil, fmt.Errorf("%w: this fleet's CA key is in AWS KMS: the new CA needs a new KMS key too (--ca-kms-key-id NEW_KEY); moving back to a key kept in the store is not supported", ErrCAMode)
	}
	// The new CA is the one the rotation record names (the current root
	// vouched for it there); a pending CA in the store that is not it was
	// put there by someone else, and is refused.
	next, err := f.claimNext(ctx, n, s.current, newKey)
	if err != nil && s.pending == nil {
		return nil, err
	}
	if s.pending != nil {
		if err != nil || !next.Cert.Equal(s.pending.Cert) {
			why := "it is not the CA the rotation record names"
			if err != nil {
				why = err.Error()
			}
			return nil, fmt.Errorf("%w: the pending CA in %s (%s) was not begun by this fleet's root: %s. Drop it with `rotate-ca abort`, then begin again; if no operator put it there, someone without the root key wrote to the store",
				ErrInconsistentStore, n.CACert(), pki.Fingerprint(s.pending.Cert), why)
		}
		next = s.pending
	}
	// Key (or key reference) before certificate, as in bootstrap.
	if k, ok := next.Key.(KMSKey); ok {
		switch cur := s.caKey; {
		case !cur.InKMS():
			// The first KMS CA of a fleet: the reference is created
			// current; it signs nothing until its certificate is promoted
			// (the signer is whichever key matches the current ca-cert).
			if err := f.Store.Create(ctx, n.Secret(n.CAKMSKey(), k.KeyID())); err != nil && !errors.Is(err, secretstore.ErrExist) {
				return nil, err
			}
		case cur.KeyID != k.KeyID():
			if err := f.Store.PutPending(ctx, n.CAKMSKey(), k.KeyID()); err != nil {
				return nil, err
			}
		}
	} else {
		keyPEM, err := pki.EncodeKey(next.Key)
		if err != nil {
			return nil, err
		}
		if err := f.Store.PutPending(ctx, n.CAKey(), string(keyPEM)); err != nil {
			return nil, err
		}
	}
	if err := f.Store.PutPending(ctx, n.CACert(), string(pki.EncodeCert(next.Cert))); err != nil {
		return nil, err
	}
	// Before the bundle, the last write: a begin is complete only with
	// them (state.begunComplete).
	if err := f.prepareBridge(ctx, s, next); err != nil {
		return nil, err
	}
	// The outgoing root signs the state that introduces the incoming one.
	if _, err := f.signTrust(ctx, s.state, s.current, []*x509.Certificate{s.current.Cert, next.Cert}, nil); err != nil {
		return nil, err
	}
	return f.RotationStatus(ctx)
}

// claimNext returns the CA recorded to replace current, creating it when
// this is the first run of the rotation. The record holds the new CA's
// certificate and its key, or for a KMS CA the line "kms-key ARN".
func (f *Fleet) claimNext(ctx context.Context, n Names, current *pki.CA, newKey CAKeyRef) (*pki.CA, error) {
	name := n.Rotation(current.Cert.SerialNumber.Text(16))
	var kms KMSKey
	if newKey.InKMS() {
		if f.OpenKMS == nil {
			return nil, fmt.Errorf("%w: --ca-kms-key-id needs AWS (Secrets Manager mode)", ErrUsage)
		}
		var err error
		if kms, err = f.OpenKMS(ctx, newKey); err != nil {
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
	rec, err := claimRecord(ctx, f.Store, sec, func() (string, error) {
		var key crypto.Signer = kms
		var head string
		if kms != nil {
			head = kmsRecordPrefix + kms.KeyID() + "\n"
		} else {
			k, err := pki.GenerateKey(f.KeyType, nil)
			if err != nil {
				return "", err
			}
			keyPEM, err := pki.EncodeKey(k)
			if err != nil {
				return "", err
			}
			key, head = k, string(keyPEM)
		}
		cert, err := pki.NewCA(key, f.Now(), f.CALifetime)
		if err != nil {
			return "", err
		}
		// The current root vouches for the record: the new CA, cross-
		// signed by it. Anyone who can create a secret can create this
		// name first; only the root can make this certificate.
		cross, err := pki.CrossSign(cert, current, f.Now())
		if err != nil {
			return "", fmt.Errorf("cross-sign the new CA with the current one: %w", err)
		}
		return head + string(pki.EncodeCerts(cert, cross)), nil
	})
	if err != nil {
		return nil, err
	}
	head, certPEM, err := splitRecord(rec, name)
	if err != nil {
		return nil, err
	}
	if certPEM, err = vouchedRecord(certPEM, current.Cert, name, n); err != nil {
		return nil, err
	}
	if ref, ok := strings.CutPrefix(head, kmsRecordPrefix); ok {
		ref = strings.TrimSpace(ref)
		if kms != nil && kms.KeyID() != ref {
			return nil, fmt.Errorf("%w: a rotation to KMS key %s was begun (%s), not to %s: run `rotate-ca abort` first to change the new CA's key", ErrUsage, ref, name, kms.KeyID())
		}
		c, err := pki.ParseCert([]byte(certPEM))
		if err != nil {
			return nil, inconsistent(name, err)
		}
		key, _, err := f.caSigner(ctx, c, nil, []CAKeyRef{f.kmsKey(ref)})
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

// vouchedRecord is the new CA's certificate (PEM) of a rotation record
// when the record also holds its cross certificate signed by current, the
// root: a record without one was not written by this fleet's root.
func vouchedRecord(certsPEM string, current *x509.Certificate, name string, n Names) (string, error) {
	certs, err := pki.ParseCerts([]byte(certsPEM))
	if err != nil {
		return "", inconsistent(name, err)
	}
	if len(certs) < 2 || !pki.IsCrossOf(certs[1], certs[0], current) {
		return "", fmt.Errorf("%w: the rotation record %s holds a new CA that the current root (%s) did not cross-sign: it was not written by a rotate-ca begin of this fleet (or by one from before records carried it). If no operator wrote it, someone without the root key did: delete it (`aws secretsmanager delete-secret --secret-id %s --force-delete-without-recovery`, or the file in a directory store) and drop any pending CA (`rotate-ca abort`), then begin again",
			ErrInconsistentStore, name, pki.Fingerprint(current), name)
	}
	_ = n
	return string(pki.EncodeCert(certs[0])), nil
}

// kmsRecordPrefix starts a rotation record whose CA key is in KMS.
const kmsRecordPrefix = "kms-key "

// PromoteRotation makes the pending CA current (the old one becomes AWSPREVIOUS and
// stays trusted) and re-issues every role's client certificate from it,
// for the same key. Nodes renew their server certificates on their next
// refresh, since theirs are no longer signed by the current CA.
func (fl *Fleet) PromoteRotation(ctx context.Context) (*RotationStatus, error) {
	f := fl.defaults()
	n := f.names()
	s, err := f.readRotation(ctx)
	if err != nil && !errors.Is(err, ErrInconsistentStore) {
		return nil, err
	}
	if s != nil && s.phase == PhaseStable {
		return nil, fmt.Errorf("no rotation in progress: run `rotate-ca begin` first")
	}
	if s != nil && s.interrupted {
		return nil, fmt.Errorf("a `rotate-ca begin` was interrupted: run it again before promoting")
	}
	if s == nil {
		// Only a promote stopped between its moves (the certificate moved,
		// the key not) is completed from an inconsistent read: with a CA
		// certificate still pending, moving it now would leave it current
		// with no key of its own.
		p, perr := f.Store.GetStage(ctx, []string{n.CACert()}, secretstore.Pending)
		if perr != nil {
			return nil, err
		}
		if p[n.CACert()] != "" {
			cur, cerr := f.Store.Get(ctx, []string{n.CACert()})
			if cerr != nil || cur[n.CACert()] != p[n.CACert()] {
				return nil, err
			}
		}
	}
	if s != nil {
		if err := f.restageKey(ctx, s); err != nil {
			return nil, err
		}
	}
	// The incoming CA signs the trust state (the same roots) before it
	// becomes current: every reader holds it already (begin's state), and
	// the state is never signed by a CA that is neither current nor
	// pending, whatever moment a reader or a crash picks.
	if s != nil && s.pending != nil && s.doc != nil {
		if err := f.resignTrust(ctx, s.state, s.pending, s.trust, nil); err != nil {
			return nil, err
		}
	}
	// Certificate first: a crash between the two moves leaves the new
	// certificate current with the old key pending, which read reports and
	// this re-run completes. Promoting what is already promoted only clears
	// leftover pending labels.
	return f.moveCA(ctx, n, f.Store.Promote, secretstore.Pending)
}

// moveCA applies a label move to the CA certificate, then brings the key
// secrets in line with it: ca-key and ca-kms-key move only when the version
// the move would make current is the key of the certificate now current
// (during a move to KMS, ca-key stays as it is). Then it re-issues the role
// client certificates from whichever CA is current. Re-running it after a
// crash between the moves completes them.
func (f *Fleet) moveCA(ctx context.Context, n Names, move func(context.Context, string) error, from secretstore.Stage) (*RotationStatus, error) {
	if err := move(ctx, n.CACert()); err != nil {
		return nil, err
	}
	if err := f.alignKeys(ctx, n, move, from); err != nil {
		return nil, err
	}
	s, err := f.readRotation(ctx)
	if err != nil {
		return nil, err
	}
	// The CA now current signs the trust state (the same roots), so the
	// state is always signed by the current CA once a step completes.
	if err := f.reissueUnder(ctx, s, s.trust); err != nil {
		return nil, err
	}
	return f.RotationStatus(ctx)
}

// alignKeys moves the labels of ca-key and ca-kms-key (by move, from the
// stage from) when the version it would make current is the key of the
// current CA certificate, and leaves them alone otherwise.
func (f *Fleet) alignKeys(ctx context.Context, n Names, move func(context.Context, string) error, from secretstore.Stage) error {
	cur, other, err := f.readKeysAt(ctx, from)
	if err != nil {
		return err
	}
	cert, err := pki.ParseCert([]byte(cur[n.CACert()]))
	if err != nil {
		return inconsistent(n.CACert(), err)
	}
	for _, name := range []string{n.CAKey(), n.CAKMSKey()} {
		if other[name] == "" || other[name] == cur[name] {
			continue
		}
		var keys []string
		var refs []CAKeyRef
		if name == n.CAKey() {
			keys = []string{other[name]}
		} else {
			refs = []CAKeyRef{f.kmsKey(other[name])}
		}
		if _, _, err := f.caSigner(ctx, cert, keys, refs); err != nil {
			continue // not this certificate's key: leave its labels alone
		}
		if err := move(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

// reissueClients gives every role a certificate from ca for its existing key
// (so two operators re-issuing at once still leave matching pairs): the one
// begin prepared when it is there (clients refreshed since hold it), else a
// new one.
func (f *Fleet) reissueClients(ctx context.Context, n Names, s *rotation, ca *pki.CA) error {
	for _, role := range pki.Roles {
		if s.clients[role].CheckSignatureFrom(ca.Cert) == nil {
			continue
		}
		if s.revokedRole(role) {
			f.warnRevokedRole(s.state, role)
			continue
		}
		if s.pendingClient(role, ca.Cert) != nil {
			if err := f.Store.Promote(ctx, n.ClientCert(role)); err != nil {
				return err
			}
			continue
		}
		if err := f.issueClient(ctx, s, role, ca, f.Store.Put); err != nil {
			return err
		}
	}
	return nil
}

// issueClient issues role a certificate from ca for the role's stored key
// and writes it with write (Put: current; PutPending: pending).
func (f *Fleet) issueClient(ctx context.Context, s *rotation, role pki.Role, ca *pki.CA, write func(context.Context, string, string) error) error {
	n := s.n
	key, err := pki.ParseKey([]byte(s.clientKeys[role]))
	if err != nil {
		return inconsistent(n.ClientKey(role), err)
	}
	is, err := ca.IssueClient(key.Public(), role, f.Now(), f.ClientLifetime)
	if err != nil {
		return fmt.Errorf("issue the %s client certificate: %w", role, err)
	}
	return write(ctx, n.ClientCert(role), string(pki.EncodeCert(is.Cert)))
}

// FinishRotation removes the old CA from the trust bundle: a certificate signed only
// by it is refused once nodes refresh.
func (fl *Fleet) FinishRotation(ctx context.Context) (*RotationStatus, error) {
	f := fl.defaults()
	s, err := f.readRotation(ctx)
	if err != nil {
		return nil, err
	}
	switch s.phase {
	case PhaseBegun:
		return nil, fmt.Errorf("the new CA is still pending: run `rotate-ca promote` first")
	case PhaseStable:
		return f.RotationStatus(ctx) // already finished
	}
	// The CRL is re-signed before the old CA leaves the trust: a CRL it
	// signed would then be unverifiable.
	if err := f.reissueUnder(ctx, s, []*x509.Certificate{s.current.Cert}); err != nil {
		return nil, err
	}
	f.removeRotationRecords(ctx, s)
	return f.RotationStatus(ctx)
}

// removeRotationRecords removes, once the old roots left the trust, the
// rotation records named after them: each holds the key of the root that
// replaced it (now the current root's), a copy no one needs once nothing
// can begin from those roots again, and one no rotation schedule covers.
// A store that cannot remove (or a policy from before, which does not
// allow it) leaves them, and says so.
func (f *Fleet) removeRotationRecords(ctx context.Context, s *rotation) {
	rm, ok := f.Store.(secretstore.Remover)
	if !ok {
		return
	}
	for _, c := range s.trust {
		if c.Equal(s.current.Cert) {
			continue
		}
		name := s.n.Rotation(c.SerialNumber.Text(16))
		if err := rm.Remove(ctx, name); err != nil {
			f.Log.Warn("the rotation record of the retired root was not removed: it holds a copy of the current root's key; remove it by hand", "secret", name, "error", err)
		}
	}
}

// reasonCessationOfOperation is RFC 5280's reason for a certificate no
// longer needed: an aborted rotation's cross certificate.
const reasonCessationOfOperation = 5

// AbortRotation steps back one phase. From begun it drops the pending CA and
// trusts the current one alone. From promoted it makes the old CA current
// again (the new one pending, both still trusted) and re-issues client
// certificates from it; nodes renew back on their next refresh, and a
// second abort then drops the new CA.
func (fl *Fleet) AbortRotation(ctx context.Context) (*RotationStatus, error) {
	f := fl.defaults()
	n := f.names()
	s, err := f.readRotation(ctx)
	if errors.Is(err, ErrInconsistentStore) {
		// An abort interrupted between demoting the certificate and its
		// key: finish demoting the key, then carry on from there.
		if err := f.alignKeys(ctx, n, f.Store.Demote, secretstore.Previous); err != nil {
			return nil, err
		}
		return f.endAbortFromPromoted(ctx, n) // that abort is now complete
	}
	if err != nil {
		return nil, err
	}
	switch s.phase {
	case PhaseStable:
		return nil, fmt.Errorf("no rotation in progress")
	case PhaseBegun:
		if s.pending != nil && signedByPending(s) {
			// An abort from promoted that stopped after moving the labels
			// back: what the new CA signed is still in use. Dropping the
			// pending CA now would leave those certificates untrusted;
			// this run completes that abort instead.
			return f.endAbortFromPromoted(ctx, n)
		}
		// The cross certificate makes the pending CA's certificates valid
		// under the current CA: revoked first, or whoever holds the
		// aborted CA's key (perhaps why it was aborted) stays admin.
		if s.cross != nil && s.pending != nil && pki.IsCrossOf(s.cross, s.pending.Cert, s.current.Cert) && !s.revoked[s.cross.SerialNumber.Text(16)] {
			if _, err := f.Revoke(ctx, s.cross.SerialNumber, reasonCessationOfOperation); err != nil {
				return nil, fmt.Errorf("revoke the aborted CA's cross certificate (%s): %w", n.CACross(), err)
			}
		}
		// The trust state before the pending versions: dropped first, the
		// pending CA would leave a store that reads as promoted (two CAs
		// trusted, nothing pending), and an abort run again after a failure
		// there would demote ca-cert, to the CA before the current one when
		// there is one. In this order a store stopped half-way reads as a
		// begin (interrupted), which the same abort completes.
		// Re-read: the revoke above signed a newer state. The aborted CA
		// leaves the lineage: its key signs no trust state anyone takes.
		r, err := f.readRotation(ctx)
		if err != nil {
			return nil, err
		}
		if err := f.resignTrust(ctx, r.state, r.current, []*x509.Certificate{r.current.Cert}, s.pendingCA()); err != nil {
			return nil, err
		}
		// Then the roles' pending certificates, before the pending CA that
		// makes the store read as begun; the CA certificate before its key
		// (as begin writes them, the other way round).
		var drop []string
		for _, role := range pki.Roles {
			if s.state.pending[n.ClientCert(role)] != "" {
				drop = append(drop, n.ClientCert(role))
			}
		}
		drop = append(drop, n.CACert(), n.CAKey(), n.CAKMSKey())
		for _, name := range drop {
			if s.vals[name] == "" {
				continue // no such secret in this fleet's mode
			}
			if err := f.Store.DropPending(ctx, name); err != nil {
				return nil, err
			}
		}
		return f.RotationStatus(ctx)
	}
	if _, err := f.moveCA(ctx, n, f.Store.Demote, secretstore.Previous); err != nil {
		return nil, err
	}
	return f.rebridge(ctx)
}

// endAbortFromPromoted completes an abort from promoted whose label moves
// are done: the roles' certificates, the node-issuing CA, the CRL and the
// trust state from the current CA again, then rebridge.
func (f *Fleet) endAbortFromPromoted(ctx context.Context, n Names) (*RotationStatus, error) {
	s, err := f.readRotation(ctx)
	if err != nil {
		return nil, err
	}
	if err := f.reissueUnder(ctx, s, s.trust); err != nil {
		return nil, err
	}
	return f.rebridge(ctx)
}

// signedByPending says whether a role's current client certificate, the
// node-issuing CA or the CRL is signed by the pending CA: never so in a
// begun phase a begin made, only when an abort from promoted stopped
// before re-issuing them from the current CA.
func signedByPending(r *rotation) bool {
	p := r.pending.Cert
	for _, c := range r.clients {
		if c != nil && c.CheckSignatureFrom(p) == nil {
			return true
		}
	}
	if r.nodeCA != nil && r.nodeCA.Cert.CheckSignatureFrom(p) == nil {
		return true
	}
	if crl, err := pki.ParseCRLUnverified([]byte(r.vals[r.n.CRL()])); err == nil && crl.CheckSignatureFrom(p) == nil {
		return true
	}
	return false
}

// rebridge ends an abort from promoted, back in the begun phase: it
// prepares that phase as begin does (the cross certificate, each role's
// pending certificate), so one refresh is still enough, and a store the
// abort left reads as begun, not as an interrupted begin.
func (f *Fleet) rebridge(ctx context.Context) (*RotationStatus, error) {
	r, err := f.readRotation(ctx)
	if err != nil {
		return nil, err
	}
	if r.pending != nil {
		if err := f.prepareBridge(ctx, r, r.pending); err != nil {
			return nil, err
		}
	}
	return f.RotationStatus(ctx)
}

// reissueUnder brings what the current CA signs in line with it after a
// rotation step: the role client certificates, the node-issuing CA, the
// CRL (verified against the trust s read), then the trust state trusting
// roots, signed by the current CA. Each is written only when it is not
// already so, so a re-run after a crash completes the step.
func (f *Fleet) reissueUnder(ctx context.Context, s *rotation, roots []*x509.Certificate) error {
	n := s.n
	if err := f.reissueClients(ctx, n, s, s.current); err != nil {
		return err
	}
	if err := f.reissueNodeCA(ctx, n, s, s.current); err != nil {
		return err
	}
	if err := f.reissueUserCA(ctx, n, s.trust, s.current); err != nil {
		return err
	}
	pol, err := f.resignIdentityPolicy(ctx, n, s.vals[n.IdentityPolicy()], s.trust, s.current)
	if err != nil {
		return err
	}
	s.vals[n.IdentityPolicy()] = pol // the trust state below names it
	if err := f.resignCRL(ctx, n, s.vals[n.CRL()], s.trust, s.current); err != nil {
		return err
	}
	return f.resignTrust(ctx, s.state, s.current, roots, nil)
}
