package certs

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

// Steps of NodeCA.
const (
	StepRootReissued   = "root-reissued"    // the root now allows a CA under it; clients refresh once
	StepNodeCACreated  = "node-ca-created"  // nodes renew from it on their next refresh
	StepNodeCAReissued = "node-ca-reissued" // re-signed by the current root, same key
	StepNothing        = "nothing"
)

// NodeCAResult says what one `joblet certs node-ca` run did.
type NodeCAResult struct {
	Step   string    `json:"step"`
	Root   CertInfo  `json:"root"`
	NodeCA *CertInfo `json:"nodeCa,omitempty"`
	// Replaced is the node-issuing CA a rekey replaced: to revoke once
	// every node serves from the new one.
	Replaced *CertInfo `json:"replaced,omitempty"`
	// Permitted are the names the node-issuing CA may sign server
	// certificates for (none: it was made before name constraints).
	Permitted []string `json:"permittedNames,omitempty"`
	// Reason says why a scheduled run (RekeyNodeCAIfDue) gave it a new
	// key; DueAt, when it did nothing, when the next one will.
	Reason string     `json:"reason,omitempty"`
	DueAt  *time.Time `json:"dueAt,omitempty"`
	Next   string     `json:"next"`
}

// StepNodeCARekeyed: a new key and certificate for the node-issuing CA.
// StepNodeCAWidened: re-issued for the same key with names added
// (PermitNames).
const (
	StepNodeCARekeyed = "node-ca-rekeyed"
	StepNodeCAWidened = "node-ca-widened"
)

// RekeyNodeCA gives the node-issuing CA a new key (after a node was
// stolen: its holder has the old key, which signs server certificates
// every client accepts). The signed trust state lists the new CA first,
// then the key is written, then its certificate (freshNodeCA says why);
// nodes renew from it on their next refresh; then revoking the old
// certificate's serial makes every chain through it refused, by nodes
// and by rnx. The new certificate keeps the names the old one permits,
// with PermitNames added; one made before name constraints gets the
// defaults (the operator's explicit re-key is where a fleet takes them
// on).
func (fl *Fleet) RekeyNodeCA(ctx context.Context) (*NodeCAResult, error) {
	f := fl.defaults()
	s, root, old, err := f.readNodeCA(ctx)
	if err != nil {
		return nil, err
	}
	// Said before the re-key, which changes the state s holds.
	why := s.foreignNodeKey()
	res, err := f.rekeyNodeCA(ctx, s, root, old)
	if err != nil {
		return nil, err
	}
	if why != "" {
		res.Reason = why + ": never certified, replaced by a new key"
	}
	return res, nil
}

// RekeyNodeCAIfDue is the scheduled run (`joblet certs node-ca --rekey
// --if-due`, daily from cron, a systemd timer or a Lambda): it gives the
// node-issuing CA a new key when it is due (pki.NodeCADue: half its life
// passed, or it lives longer than a node-issuing CA may), when a
// rotation's root change left it signed by the previous root, when
// PermitNames widen it, or when the store's node-issuing key is one the
// signed trust state never listed (written without the root key: never
// certified, replaced); otherwise it changes nothing (StepNothing). A
// re-key interrupted between its key and its certificate writes is
// completed with the certificate its trust state listed, so a run
// repeated after a crash leaves one new key. It never takes a migration
// step (`joblet certs node-ca`), and never adds name constraints to a
// node-issuing CA made before them (a node whose names fall outside could
// not renew): it refuses, saying how to re-key it once by hand.
func (fl *Fleet) RekeyNodeCAIfDue(ctx context.Context) (*NodeCAResult, error) {
	f := fl.defaults()
	s, root, old, err := f.readNodeCA(ctx)
	if err != nil {
		return nil, err
	}
	n, now := s.n, f.Now()
	if key, kerr := pki.ParseKey([]byte(s.vals[n.NodeCAKey()])); kerr == nil && pki.MatchesKey(old, key) != nil && s.nodeKeyVouch(key, old) != nil {
		nca, err := f.ensureNodeCA(ctx, s, root, true)
		if err != nil {
			return nil, err
		}
		if err := f.listNodeCAs(ctx, s, root, nca, s.listedOrNil(old)); err != nil {
			return nil, err
		}
		res := f.rekeyed(root, nca, old)
		res.Reason = "a re-key was interrupted between its key and its certificate: completed with the certificate the signed trust state lists for the key it wrote"
		res.Next = scheduledNext(old, res.Replaced.Serial)
		return res, nil
	}
	have, ok := pki.NodeConstraintsOf(old)
	if !ok {
		return nil, fmt.Errorf("%w: the node-issuing CA (%s, serial %s) carries no name constraints (it was made before them), and a scheduled run does not add them: a node whose names fall outside could no longer renew. "+
			"Re-key it once by hand, with the names your nodes' certificates carry beyond the defaults (%s): `joblet certs node-ca --rekey --permit-server-names NAMES` (`joblet certs status` on a node lists its names); scheduled runs keep them from then on",
			ErrUsage, n.NodeCACert(), pki.SerialHex(old.SerialNumber), strings.Join(pki.DefaultNodeNames, ", "))
	}
	reason := s.foreignNodeKey()
	if reason != "" {
		reason += ": never certified, replaced by a new key"
	} else if due, why := pki.NodeCADue(old, now); due {
		reason = why
	} else if old.CheckSignatureFrom(root.Cert) != nil {
		reason = "it is signed by a previous root (a CA rotation step)"
	} else if !have.Covers(f.PermitNames) {
		reason = "names to permit were given"
	}
	if reason == "" {
		info, at := infoOf(old), pki.NodeCADueAt(old).UTC()
		return &NodeCAResult{Step: StepNothing, Root: infoOf(root.Cert), NodeCA: &info, Permitted: have.Strings(), DueAt: &at,
			Next: fmt.Sprintf("nothing to do: the node-issuing CA (serial %s) is due for a new key at %s", info.Serial, at.Format(time.RFC3339))}, nil
	}
	res, err := f.rekeyNodeCA(ctx, s, root, old)
	if err != nil {
		return nil, err
	}
	res.Reason, res.Next = reason, scheduledNext(old, res.Replaced.Serial)
	return res, nil
}

// scheduledNext is what follows a scheduled re-key: nothing but the
// nodes' own refresh.
func scheduledNext(old *x509.Certificate, serial string) string {
	return "nodes move to the new node-issuing CA on their next refresh; clients trust the root and need nothing. The old one expires on its own on " +
		old.NotAfter.UTC().Format(time.RFC3339) + " (revoke it only if its key was stolen: `joblet certs revoke --serial " + serial + " --reason keyCompromise`)"
}

// readNodeCA reads the fleet with the root's key and its node-issuing CA
// certificate, which a re-key replaces.
func (f *Fleet) readNodeCA(ctx context.Context) (*state, *pki.CA, *x509.Certificate, error) {
	s, root, err := f.readWithRoot(ctx, false)
	if err != nil {
		return nil, nil, nil, err
	}
	old, err := pki.ParseCert([]byte(s.vals[s.n.NodeCACert()]))
	if err != nil || !pki.AllowsIntermediates(root.Cert) {
		return nil, nil, nil, fmt.Errorf("%w: the fleet has no node-issuing CA to re-key: run `joblet certs node-ca` first", ErrUsage)
	}
	return s, root, old, nil
}

// rekeyAttempts bounds how often a re-key starts again when another run
// changed the node-issuing pair between its writes.
const rekeyAttempts = 3

// rekeyNodeCA gives the node-issuing CA a new key (freshNodeCA), replacing
// old (nil: none), and reads the pair back: a concurrent run (two
// schedulers) may have written its own between ours. The stored pair is
// then taken when the signed trust state lists it; otherwise the re-key
// starts again from a new read.
func (f *Fleet) rekeyNodeCA(ctx context.Context, s *state, root *pki.CA, old *x509.Certificate) (*NodeCAResult, error) {
	n := s.n
	for attempt := 1; ; attempt++ {
		nca, keyPEM, err := f.freshNodeCA(ctx, s, root, old)
		if err != nil {
			return nil, err
		}
		got, err := f.Store.Get(ctx, []string{n.NodeCACert(), n.NodeCAKey(), n.Bundle()})
		if err != nil {
			return nil, fmt.Errorf("read the node-issuing CA back: %w", err)
		}
		if got[n.NodeCAKey()] == keyPEM && got[n.NodeCACert()] == string(pki.EncodeCert(nca.Cert)) {
			if s.doc != nil && !listsNodeCA(got[n.Bundle()], n.Prefix, append(s.operatorAnchors(), root.Cert), nca.Cert) {
				// Another writer of the trust state (a revoke, `trust
				// sign`) read it before this re-key listed its CA and
				// wrote after: this pair is ours, listed again from a
				// fresh read.
				s2, root2, err := f.readWithRoot(ctx, false)
				if err != nil {
					return nil, err
				}
				if err := f.listNodeCAs(ctx, s2, root2, nca, s2.listedOrNil(old)); err != nil {
					return nil, err
				}
			}
			return f.rekeyed(root, nca, old), nil
		}
		if s, root, err = f.readWithRoot(ctx, false); err != nil {
			return nil, err
		}
		if p := s.nodeCA; p != nil && p.Cert.CheckSignatureFrom(root.Cert) == nil && s.nodeKeyVouch(p.Key, p.Cert) != nil {
			return f.rekeyed(root, p, old), nil // another run's, listed
		}
		if attempt == rekeyAttempts {
			return nil, fmt.Errorf("%w: the node-issuing pair (%s, %s) changed under this re-key %d times: another run is re-keying it at the same time. Run this again once it ended", ErrInconsistentStore, n.NodeCAKey(), n.NodeCACert(), attempt)
		}
	}
}

// listsNodeCA: the trust state in bundle verifies from anchors and lists a
// node-issuing CA for c's key.
func listsNodeCA(bundle, prefix string, anchors []*x509.Certificate, c *x509.Certificate) bool {
	t, err := pki.VerifyTrust([]byte(bundle), prefix, anchors, nil, nil)
	return err == nil && slices.ContainsFunc(t.NodeCACerts(), func(l *x509.Certificate) bool { return pki.SameKey(l, c) })
}

// freshNodeCA makes the node-issuing CA a new key and writes it, in the
// one order that never has the root certify a key the fleet did not make,
// and never has nodes serve from a CA the signed trust state does not
// list (clients refuse those):
//
//  1. the key and its certificate are made here, in memory;
//  2. the signed trust state listing the new certificate (and what it
//     lists already) is written;
//  3. then the key, and
//  4. then the certificate, which nodes renew from.
//
// Stopped after 2, the state lists a CA whose key nobody holds: harmless,
// dropped when it expires. Stopped after 3, the store's key is not its
// certificate's; nodes keep serving (and cannot renew) until the next run,
// which finds the key listed (nodeKeyVouch) and completes the pair with
// the listed certificate. A key found in the store that no listed
// certificate is for was not written by this step: never certified. A
// fleet without a signed state skips 2 (its key is then certified only
// when its own certificate is, and an interrupted one is replaced). old
// is the CA replaced (nil: none), whose names and lifetime it keeps.
func (f *Fleet) freshNodeCA(ctx context.Context, s *state, root *pki.CA, old *x509.Certificate) (*pki.CA, string, error) {
	n := s.n
	nca, enc, err := f.mintNodeCA(ctx, s, root, old)
	if err != nil {
		return nil, "", err
	}
	if err := putOrCreate(ctx, f.Store, n, n.NodeCAKey(), enc); err != nil {
		return nil, "", err
	}
	if err := putOrCreate(ctx, f.Store, n, n.NodeCACert(), string(pki.EncodeCert(nca.Cert))); err != nil {
		return nil, "", err
	}
	return nca, enc, nil
}

// mintNodeCA is steps 1 and 2 of freshNodeCA: a new node-issuing key and
// its certificate under root, made in memory, listed in the signed trust
// state; nothing else is written. It returns them and the key's PEM.
// Secrets Manager's rotation (createSecret) writes that key as the pending
// version instead of the current one.
func (f *Fleet) mintNodeCA(ctx context.Context, s *state, root *pki.CA, old *x509.Certificate) (*pki.CA, string, error) {
	k, err := pki.GenerateKey(f.KeyType, nil)
	if err != nil {
		return nil, "", err
	}
	enc, err := pki.EncodeKey(k)
	if err != nil {
		return nil, "", err
	}
	// Names and lifetime only from a certificate a trusted root signed:
	// anyone can put one of their own making in the store.
	basis := old
	if !s.signedByTrusted(old) {
		basis = nil
	}
	is, err := root.IssueNodeCA(k.Public(), f.Now(), f.nodeCALifetime(basis), f.nodeCANames(basis, true))
	if err != nil {
		return nil, "", err
	}
	nca := &pki.CA{Cert: is.Cert, Key: k}
	if err := f.listNodeCAs(ctx, s, root, nca, s.listedOrNil(old)); err != nil {
		return nil, "", err
	}
	return nca, string(enc), nil
}

// nodeKeyVouch is the certificate that makes key, a node-issuing key read
// from the store, one the root may certify again: a node-issuing CA the
// verified trust state lists for that key, unexpired and not revoked (the
// key nodes use, or a re-key's, whose certificate freshNodeCA lists before
// it writes the key). Prefer cur (the stored certificate) when it is
// that. A fleet whose state lists none (a fleet from before the signed
// state, or from before it listed node-issuing CAs) has only cur to go by:
// key's, unexpired, unrevoked and signed by a CA it trusts. Nil: the root
// never vouched for this key for the fleet (a key written without the root
// key, or a re-key stopped before it listed its own); it must not now.
func (s *state) nodeKeyVouch(key crypto.Signer, cur *x509.Certificate) *x509.Certificate {
	usable := func(c *x509.Certificate) bool {
		return c != nil && pki.MatchesKey(c, key) == nil && s.now.Before(c.NotAfter) && !s.revoked[c.SerialNumber.Text(16)]
	}
	var listed []*x509.Certificate
	if s.doc != nil {
		listed = s.doc.NodeCACerts()
	}
	if len(listed) == 0 {
		if usable(cur) && s.signedByTrusted(cur) {
			return cur
		}
		return nil
	}
	var vouch *x509.Certificate
	for _, c := range listed {
		if usable(c) && (vouch == nil || c.NotAfter.After(vouch.NotAfter)) {
			vouch = c
		}
	}
	if vouch != nil && usable(cur) && s.signedByTrusted(cur) {
		return cur
	}
	return vouch
}

// nodeCARoots are the CAs a node-issuing CA may be signed by: the trust
// (and the current CA for a fleet without a signed state).
func (s *state) nodeCARoots() []*x509.Certificate {
	if s.doc == nil && s.ca != nil {
		return append([]*x509.Certificate{s.ca}, s.trust...)
	}
	return s.trust
}

// signedByTrusted: c is a certificate a CA the reader trusts signed.
func (s *state) signedByTrusted(c *x509.Certificate) bool {
	return c != nil && slices.ContainsFunc(s.nodeCARoots(), func(r *x509.Certificate) bool { return c.CheckSignatureFrom(r) == nil })
}

// listedOrNil is c when the trust state may list it as a node-issuing CA
// being replaced: one it lists already, or, for a state that lists none,
// one a trusted CA signed. Never a certificate only the store holds.
func (s *state) listedOrNil(c *x509.Certificate) *x509.Certificate {
	if c == nil {
		return nil
	}
	if s.doc != nil && len(s.doc.NodeCACerts()) > 0 {
		if slices.ContainsFunc(s.doc.NodeCACerts(), c.Equal) {
			return c
		}
		return nil
	}
	if s.signedByTrusted(c) {
		return c
	}
	return nil
}

// foreignNodeKey says why the store's node-issuing key is not one the
// root may certify ("" when it is, or when there is none): a key no
// node-issuing CA the signed trust state lists is for. Someone wrote it
// without the root key (or a re-key stopped before it listed its own); a
// run of `certs node-ca` replaces it with a new key, never certifies it.
func (s *state) foreignNodeKey() string {
	n := s.n
	pem := s.vals[n.NodeCAKey()]
	if pem == "" {
		return ""
	}
	key, err := pki.ParseKey([]byte(pem))
	if err != nil {
		return fmt.Sprintf("%s does not hold a usable key (%v)", n.NodeCAKey(), err)
	}
	cur, _ := pki.ParseCert([]byte(s.vals[n.NodeCACert()]))
	if s.nodeKeyVouch(key, cur) != nil {
		return ""
	}
	what := "the signed trust state (version %d) lists"
	if s.doc == nil || len(s.doc.NodeCACerts()) == 0 {
		return fmt.Sprintf("%s holds a key that %s (a certificate signed by a trusted CA) is not for: written without the root key, or a re-key stopped between its two writes", n.NodeCAKey(), n.NodeCACert())
	}
	return fmt.Sprintf("%s holds a key that no node-issuing CA "+what+" is for: written without the root key, or a re-key stopped before it listed its own", n.NodeCAKey(), s.doc.Version)
}

// rekeyed reports a new node-issuing CA nca that replaced old (nil: none).
func (f *Fleet) rekeyed(root *pki.CA, nca *pki.CA, old *x509.Certificate) *NodeCAResult {
	info := infoOf(nca.Cert)
	nc, _ := pki.NodeConstraintsOf(nca.Cert)
	res := &NodeCAResult{Step: StepNodeCARekeyed, Root: infoOf(root.Cert), NodeCA: &info, Permitted: nc.Strings(),
		Next: "nodes renew from the new node-issuing CA on their next refresh (or now: `joblet certs renew` on each; `joblet certs status` on a node shows its issuer)"}
	if old != nil {
		replaced := infoOf(old)
		res.Replaced = &replaced
		res.Next += fmt.Sprintf(". Then revoke the old one, which refuses every chain through it: `joblet certs revoke --serial %s --reason keyCompromise`", replaced.Serial)
	}
	return res
}

// NodeCA moves a fleet to split issuing power, one step per run, with the
// operator's permissions (the root's key):
//
//  1. A root made before node-issuing CAs carries pathlen 0, and no
//     verifier (Go's, openssl's) accepts a chain through a CA under it.
//     It is re-issued for the same key and name without that limit, and
//     keeps its expiry: everything it signed stays valid under either
//     certificate, so nothing breaks. A client config that still trusts
//     the old certificate would refuse a node serving from a node-issuing
//     CA, though: each needs one `rnx config refresh` before step 2.
//  2. The node-issuing pair is created (freshNodeCA: listed in the signed
//     trust state, then the key, then the certificate). Nodes renew from
//     it on their next refresh, and `certs status` shows those that have
//     not yet; then the node policy can be tightened to `iam-policy --for
//     node`.
//
// A node-issuing CA signed by another CA than the current one (after a
// rotation step) is re-issued for its key, and a re-key stopped between
// its key and its certificate is completed, both only for a key the signed
// trust state lists (nodeKeyVouch): a key it does not list is replaced by
// a new one, never certified. Re-running when all is done changes nothing.
func (fl *Fleet) NodeCA(ctx context.Context) (*NodeCAResult, error) {
	f := fl.defaults()
	s, root, err := f.readWithRoot(ctx, true)
	if err != nil {
		return nil, err
	}
	n := s.n
	res := &NodeCAResult{Step: StepNothing, Root: infoOf(root.Cert)}
	if !pki.AllowsIntermediates(root.Cert) {
		if s.phase != PhaseStable {
			return nil, fmt.Errorf("%w: a CA rotation is in progress (%s): finish or abort it first (its new CA already allows the node-issuing CA)", ErrUsage, s.phase)
		}
		c, err := pki.ReissueCA(root.Cert, root.Key)
		if err != nil {
			return nil, err
		}
		// The bundle first (it holds what nodes and clients trust), then
		// ca-cert: a reader between the two trusts both certificates of
		// the one CA.
		certs := []*x509.Certificate{c}
		for _, t := range s.trust {
			if !sameCA(t, root.Cert) {
				certs = append(certs, t)
			}
		}
		if _, err := f.signTrust(ctx, s, &pki.CA{Cert: c, Key: root.Key}, certs, nil); err != nil {
			return nil, err
		}
		if err := f.Store.Put(ctx, n.CACert(), string(pki.EncodeCert(c))); err != nil {
			return nil, fmt.Errorf("replace %s: %w", n.CACert(), err)
		}
		res.Step, res.Root = StepRootReissued, infoOf(c)
		res.Next = "every client config needs one `rnx config refresh` (or a new one from `rnx config init`) to trust the re-issued root; nodes take it on their next refresh. Then run `joblet certs node-ca` again to add the node-issuing CA"
		return res, nil
	}
	old, _ := pki.ParseCert([]byte(s.vals[n.NodeCACert()]))
	if old != nil && !f.Now().Before(old.NotAfter) {
		// Expired (its schedule stopped): a key past its lifetime gets a
		// new one, never a new certificate.
		res, err := f.rekeyNodeCA(ctx, s, root, old)
		if err != nil {
			return nil, err
		}
		res.Reason, res.Next = "it had expired", scheduledNext(old, res.Replaced.Serial)+". Then schedule `joblet certs node-ca --rekey --if-due` daily, so that it never expires again"
		return res, nil
	}
	// PermitNames widen what it may sign: a re-issue for the same key.
	nca, err := f.ensureNodeCA(ctx, s, root, !f.PermitNames.Empty())
	if err != nil {
		return nil, err
	}
	if nca == nil {
		// No key the root may certify: none (the fleet's first), or one
		// the signed trust state does not list, which gets a new one.
		foreign := s.foreignNodeKey()
		res, err := f.rekeyNodeCA(ctx, s, root, old)
		if err != nil {
			return nil, err
		}
		switch {
		case s.vals[n.NodeCAKey()] == "" && old == nil:
			res.Step = StepNodeCACreated
			res.Next = "nodes renew from the node-issuing CA on their next refresh (or now: `joblet certs renew` on each); `joblet certs status` on a node says whether it still serves a certificate signed by the root. Once every node has, tighten the node policy: `joblet certs iam-policy --for node`"
		case foreign != "":
			res.Reason = foreign + ": never certified, replaced by a new key"
		default:
			res.Reason = n.NodeCAKey() + " was missing: a new key"
		}
		return res, nil
	}
	switch {
	case string(pki.EncodeCert(nca.Cert)) == s.vals[n.NodeCACert()]:
	case s.nodeCA == nil && old != nil && pki.MatchesKey(old, nca.Key) != nil:
		res.Step, res.Reason = StepNodeCAReissued, "a re-key was interrupted between its key and its certificate: completed with the certificate the signed trust state lists for its key"
	case s.nodeCA == nil || s.nodeCA.Cert.CheckSignatureFrom(root.Cert) != nil:
		res.Step = StepNodeCAReissued
	default:
		res.Step = StepNodeCAWidened
	}
	if err := f.listNodeCAs(ctx, s, root, nca, nil); err != nil {
		return nil, err
	}
	info := infoOf(nca.Cert)
	res.NodeCA = &info
	nc, _ := pki.NodeConstraintsOf(nca.Cert)
	res.Permitted = nc.Strings()
	res.Next = "nodes renew from the node-issuing CA on their next refresh (or now: `joblet certs renew` on each); `joblet certs status` on a node says whether it still serves a certificate signed by the root. Once every node has, tighten the node policy: `joblet certs iam-policy --for node`"
	switch res.Step {
	case StepNothing:
		res.Next = "nothing to do: the fleet issues server certificates from its node-issuing CA"
	case StepNodeCAWidened:
		res.Next = "nodes renew from the re-issued node-issuing CA on their next refresh (or now: `joblet certs renew` on each); nodes with the added names can join. Clients trust the root and need nothing"
	}
	return res, nil
}

// ensureNodeCA returns the store's node-issuing pair signed by root, when
// the store holds a key the root may certify (nodeKeyVouch): the
// certificate re-signed for the same key when another CA signed it (a
// rotation step) or it does not permit the names it should (nodeCANames,
// with adopt), within the same validity window, so its key is due when it
// was; and the certificate the trust state lists for it written when the
// store's is not for it (a re-key stopped between its key and its
// certificate). Nil, with no error, when the store holds no such key (none,
// or one the root never vouched for): the caller makes a new one
// (rekeyNodeCA), so a key written without the root key is never certified.
func (f *Fleet) ensureNodeCA(ctx context.Context, s *state, root *pki.CA, adopt bool) (*pki.CA, error) {
	n := s.n
	key, err := pki.ParseKey([]byte(s.vals[n.NodeCAKey()]))
	if err != nil {
		return nil, nil
	}
	stored, _ := pki.ParseCert([]byte(s.vals[n.NodeCACert()]))
	cur := s.nodeKeyVouch(key, stored)
	if cur == nil {
		return nil, nil
	}
	return f.certifyNodeKey(ctx, n, key, cur, s.vals[n.NodeCACert()], root, adopt)
}

// ensureNodeCAFrom returns the node-issuing pair held in vals (its key and
// certificate, which must match: a key is never certified anew here) signed
// by root, re-signed for the same key as ensureNodeCA does: how a
// bootstrap run by the operator widens the names of the pair it read.
func (f *Fleet) ensureNodeCAFrom(ctx context.Context, n Names, vals map[string]string, root *pki.CA, adopt bool) (*pki.CA, error) {
	key, err := pki.ParseKey([]byte(vals[n.NodeCAKey()]))
	if err != nil {
		return nil, inconsistent(n.NodeCAKey(), err)
	}
	cur, err := pki.ParseCert([]byte(vals[n.NodeCACert()]))
	if err != nil {
		return nil, inconsistent(n.NodeCACert(), err)
	}
	if pki.MatchesKey(cur, key) != nil {
		return nil, fmt.Errorf("%w: %s is not the certificate of %s: `joblet certs node-ca` completes the pair (or replaces a key the signed trust state does not list)", ErrInconsistentStore, n.NodeCACert(), n.NodeCAKey())
	}
	return f.certifyNodeKey(ctx, n, key, cur, vals[n.NodeCACert()], root, adopt)
}

// certifyNodeKey returns cur, a certificate for key the root already
// vouched for, when it is signed by root and permits the names it should,
// else re-signs it for the same key in its window; either is written to
// the store unless it holds it already (storedPEM).
func (f *Fleet) certifyNodeKey(ctx context.Context, n Names, key crypto.Signer, cur *x509.Certificate, storedPEM string, root *pki.CA, adopt bool) (*pki.CA, error) {
	names := f.nodeCANames(cur, adopt)
	out := cur
	have, _ := pki.NodeConstraintsOf(cur)
	if pki.CheckNodeCA(cur, root.Cert, f.Now()) != nil || !(names.Empty() || (!have.Empty() && have.Covers(names))) {
		// The same key keeps its window: a widening or a root's change
		// does not move when the key is due.
		is, err := root.ReissueNodeCA(cur, f.Now(), names)
		if err != nil {
			return nil, err
		}
		out = is.Cert
	}
	if enc := string(pki.EncodeCert(out)); enc != storedPEM {
		if err := putOrCreate(ctx, f.Store, n, n.NodeCACert(), enc); err != nil {
			return nil, err
		}
	}
	return &pki.CA{Cert: out, Key: key}, nil
}

// nodeCANames are the names a node-issuing CA issued now may sign server
// certificates for. A re-issue keeps those of the one it replaces (cur),
// read back from its certificate: the certificate is their only record,
// so no secret can disagree with it. A fleet's first gets the defaults
// (pki.DefaultNodeNames). The Fleet's PermitNames are added. One made
// before name constraints (cur carries none) stays without them unless
// adopt (an operator's re-key or widening): constraining it could leave a
// node whose names fall outside unable to renew, and only the operator
// knows the names the fleet's nodes carry. Empty: unconstrained.
func (f *Fleet) nodeCANames(cur *x509.Certificate, adopt bool) pki.NameConstraints {
	base := pki.DefaultNodeConstraints()
	if cur != nil {
		nc, ok := pki.NodeConstraintsOf(cur)
		switch {
		case ok:
			base = nc
		case !adopt:
			return pki.NameConstraints{}
		}
	}
	return base.Union(f.PermitNames)
}

// nodeCALifetime is how long a node-issuing CA issued now lives: the
// Fleet's NodeCALifetime when set; else that of the one it replaces
// (cur), so a scheduled re-key keeps what the operator chose at init;
// else, or when that one lived longer than a node-issuing CA may (made
// before lifetimes were bounded), the default.
func (f *Fleet) nodeCALifetime(cur *x509.Certificate) time.Duration {
	if f.NodeCALifetime > 0 {
		return f.NodeCALifetime
	}
	if cur != nil {
		if l := pki.LifetimeOf(cur); l <= pki.MaxNodeCALifetime {
			return l
		}
	}
	return pki.DefaultNodeCALifetime
}

// sansConstraints are a node's server names as name constraints: a DNS
// name permits itself (and the names under it), an address itself.
func sansConstraints(sans pki.SANs) (pki.NameConstraints, error) {
	items := append([]string{}, sans.DNS...)
	for _, ip := range sans.IPs {
		items = append(items, ip.String())
	}
	return pki.ParseNameConstraints(items)
}

// reissueNodeCA re-signs the node-issuing CA from ca when the fleet has
// one (or ca allows one and the fleet moves to it with this rotation):
// called when a rotation step changes the current CA, so nodes renew
// from a node-issuing CA under the CA that is current. Only for a key the
// signed trust state lists (ensureNodeCA); any other key (written without
// the root key) is replaced by a new one, listed first (freshNodeCA).
func (f *Fleet) reissueNodeCA(ctx context.Context, n Names, s *rotation, ca *pki.CA) error {
	if !pki.AllowsIntermediates(ca.Cert) {
		return nil
	}
	nca, err := f.ensureNodeCA(ctx, s.state, ca, false)
	if err != nil {
		return err
	}
	if nca == nil {
		old, _ := pki.ParseCert([]byte(s.vals[n.NodeCACert()]))
		if why := s.foreignNodeKey(); why != "" {
			f.Log.Warn("the node-issuing key in the store is not one the root may certify: replaced by a new one", "why", why)
		}
		if old != nil && !f.Now().Before(old.NotAfter) {
			old = nil
		}
		_, err := f.rekeyNodeCA(ctx, s.state, ca, old)
		return err
	}
	return nil
}

// readWithRoot reads what the node-issuing CA's flows need (the root's key
// places, the node-issuing pair, with the pending versions when asked)
// and opens the root's signer.
func (f *Fleet) readWithRoot(ctx context.Context, pending bool) (*state, *pki.CA, error) {
	s, err := f.readState(ctx, scope{bothKeys: true, nodeCA: true, pending: pending})
	if err != nil {
		return nil, nil, err
	}
	if err := s.trusted(); err != nil {
		return nil, nil, err
	}
	root, err := s.signer(ctx, f)
	if err != nil {
		return nil, nil, err
	}
	return s, root, nil
}

// nodeKeyListedApart: the store's node-issuing key is one the trust state
// vouches for, and the store's certificate is not for it (a re-key
// stopped between its key and its certificate, which a run completes).
func (s *state) nodeKeyListedApart() bool {
	key, err := pki.ParseKey([]byte(s.vals[s.n.NodeCAKey()]))
	if err != nil {
		return false
	}
	cur, err := pki.ParseCert([]byte(s.vals[s.n.NodeCACert()]))
	return err == nil && pki.MatchesKey(cur, key) != nil && s.nodeKeyVouch(key, cur) != nil
}
