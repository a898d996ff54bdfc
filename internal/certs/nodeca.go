package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
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
// every client accepts). The key goes first, then its certificate; nodes
// renew from it on their next refresh; then revoking the old certificate's
// serial makes every chain through it refused, by nodes and by rnx. A
// re-run after a crash between the two writes completes the pair. The new
// certificate keeps the names the old one permits, with PermitNames
// added; one made before name constraints gets the defaults (the
// operator's explicit re-key is where a fleet takes them on).
func (fl *Fleet) RekeyNodeCA(ctx context.Context) (*NodeCAResult, error) {
	f := fl.defaults()
	s, root, old, err := f.readNodeCA(ctx)
	if err != nil {
		return nil, err
	}
	return f.rekeyNodeCA(ctx, s, root, old)
}

// RekeyNodeCAIfDue is the scheduled run (`joblet certs node-ca --rekey
// --if-due`, daily from cron, a systemd timer or a Lambda): it gives the
// node-issuing CA a new key when it is due (pki.NodeCADue: half its life
// passed, or it lives longer than a node-issuing CA may), when a
// rotation's root change left it signed by the previous root, or when
// PermitNames widen it; otherwise it changes nothing (StepNothing). A
// re-key interrupted between its key and its certificate writes is
// completed for the key it wrote, so a run repeated after a crash leaves
// one new key. It never takes a migration step (`joblet certs node-ca`),
// and never adds name constraints to a node-issuing CA made before them
// (a node whose names fall outside could not renew): it refuses, saying
// how to re-key it once by hand.
func (fl *Fleet) RekeyNodeCAIfDue(ctx context.Context) (*NodeCAResult, error) {
	f := fl.defaults()
	s, root, old, err := f.readNodeCA(ctx)
	if err != nil {
		return nil, err
	}
	n, now := s.n, f.Now()
	if key, kerr := pki.ParseKey([]byte(s.vals[n.NodeCAKey()])); kerr == nil && pki.MatchesKey(old, key) != nil {
		nca, err := f.ensureNodeCAFrom(ctx, n, s.vals, root, true)
		if err != nil {
			return nil, err
		}
		if err := f.listNodeCAs(ctx, s, root, nca, old); err != nil {
			return nil, err
		}
		res := f.rekeyed(root, nca, old)
		res.Reason = "a re-key was interrupted between its key and its certificate: completed for the key it wrote"
		res.Next = scheduledNext(old, res.Replaced.Serial)
		return res, nil
	}
	have, ok := pki.NodeConstraintsOf(old)
	if !ok {
		return nil, fmt.Errorf("%w: the node-issuing CA (%s, serial %s) carries no name constraints (it was made before them), and a scheduled run does not add them: a node whose names fall outside could no longer renew. "+
			"Re-key it once by hand, with the names your nodes' certificates carry beyond the defaults (%s): `joblet certs node-ca --rekey --permit-server-names NAMES` (`joblet certs status` on a node lists its names); scheduled runs keep them from then on",
			ErrUsage, n.NodeCACert(), pki.SerialHex(old.SerialNumber), strings.Join(pki.DefaultNodeNames, ", "))
	}
	reason := ""
	if due, why := pki.NodeCADue(old, now); due {
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

// rekeyNodeCA writes a new key for the node-issuing CA, then its
// certificate (old's names, with PermitNames), and reads the pair back: a
// concurrent run (two schedulers) may have written its key between ours
// and our certificate, and the pair is then completed for the key stored.
func (f *Fleet) rekeyNodeCA(ctx context.Context, s *state, root *pki.CA, old *x509.Certificate) (*NodeCAResult, error) {
	n := s.n
	k, err := pki.GenerateKey(f.KeyType, nil)
	if err != nil {
		return nil, err
	}
	enc, err := pki.EncodeKey(k)
	if err != nil {
		return nil, err
	}
	if err := putOrCreate(ctx, f.Store, n, n.NodeCAKey(), string(enc)); err != nil {
		return nil, err
	}
	nca, err := f.ensureNodeCAFrom(ctx, n, map[string]string{n.NodeCAKey(): string(enc), n.NodeCACert(): s.vals[n.NodeCACert()]}, root, true)
	if err != nil {
		return nil, err
	}
	got, err := f.Store.Get(ctx, []string{n.NodeCACert(), n.NodeCAKey()})
	if err != nil {
		return nil, fmt.Errorf("read the node-issuing CA back: %w", err)
	}
	if got[n.NodeCAKey()] != string(enc) || got[n.NodeCACert()] != string(pki.EncodeCert(nca.Cert)) {
		if nca, err = f.ensureNodeCAFrom(ctx, n, got, root, true); err != nil {
			return nil, err
		}
	}
	// The trust state lists it (and the one it replaced, which nodes
	// serve from until they renew).
	if err := f.listNodeCAs(ctx, s, root, nca, old); err != nil {
		return nil, err
	}
	return f.rekeyed(root, nca, old), nil
}

// rekeyed reports a new node-issuing CA nca that replaced old.
func (f *Fleet) rekeyed(root *pki.CA, nca *pki.CA, old *x509.Certificate) *NodeCAResult {
	info, replaced := infoOf(nca.Cert), infoOf(old)
	nc, _ := pki.NodeConstraintsOf(nca.Cert)
	return &NodeCAResult{Step: StepNodeCARekeyed, Root: infoOf(root.Cert), NodeCA: &info, Replaced: &replaced, Permitted: nc.Strings(),
		Next: fmt.Sprintf("nodes renew from the new node-issuing CA on their next refresh (or now: `joblet certs renew` on each; `joblet certs status` on a node shows its issuer). Then revoke the old one, which refuses every chain through it: `joblet certs revoke --serial %s --reason keyCompromise`", replaced.Serial)}
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
//  2. The node-issuing pair is created, key first (create-only, so two
//     operators agree on one). Nodes renew from it on their next refresh,
//     and `certs status` shows those that have not yet; then the node
//     policy can be tightened to `iam-policy --for node`.
//
// A node-issuing CA signed by another CA than the current one (after a
// rotation step) is re-issued for its key. Re-running when all is done
// changes nothing.
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
	if old, err := pki.ParseCert([]byte(s.vals[n.NodeCACert()])); err == nil && !f.Now().Before(old.NotAfter) {
		// Expired (its schedule stopped): a key past its lifetime gets a
		// new one, never a new certificate.
		res, err := f.rekeyNodeCA(ctx, s, root, old)
		if err != nil {
			return nil, err
		}
		res.Reason, res.Next = "it had expired", scheduledNext(old, res.Replaced.Serial)+". Then schedule `joblet certs node-ca --rekey --if-due` daily, so that it never expires again"
		return res, nil
	}
	switch {
	case s.nodeCA == nil && s.vals[n.NodeCAKey()] == "" && s.vals[n.NodeCACert()] == "":
		res.Step = StepNodeCACreated
	case s.nodeCA == nil || s.nodeCA.Cert.CheckSignatureFrom(root.Cert) != nil:
		res.Step = StepNodeCAReissued
	}
	// PermitNames widen what it may sign: a re-issue for the same key.
	nca, err := f.ensureNodeCAFrom(ctx, n, s.vals, root, !f.PermitNames.Empty())
	if err != nil {
		return nil, err
	}
	if res.Step == StepNothing && !nca.Cert.Equal(s.nodeCA.Cert) {
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

// ensureNodeCAFrom returns the node-issuing pair signed by root, creating
// the key (create-only) and the certificate when missing, and re-signing
// the certificate for the same key when another CA signed it (a rotation
// step), it does not match its key, or it does not permit the names it
// should (nodeCANames, with adopt): for the same key within the same
// validity window, so its key is due when it was. vals holds what was
// read.
func (f *Fleet) ensureNodeCAFrom(ctx context.Context, n Names, vals map[string]string, root *pki.CA, adopt bool) (*pki.CA, error) {
	keyPEM := vals[n.NodeCAKey()]
	if keyPEM == "" {
		k, err := pki.GenerateKey(f.KeyType, nil)
		if err != nil {
			return nil, err
		}
		enc, err := pki.EncodeKey(k)
		if err != nil {
			return nil, err
		}
		switch err := f.Store.Create(ctx, n.Secret(n.NodeCAKey(), string(enc))); {
		case err == nil:
			keyPEM = string(enc)
		case errors.Is(err, secretstore.ErrExist):
			got, err := readBack(ctx, f.Store, n.NodeCAKey(), n.NodeCACert())
			if err != nil {
				return nil, err
			}
			keyPEM, vals = got[n.NodeCAKey()], got
		default:
			return nil, fmt.Errorf("store %s: %w", n.NodeCAKey(), err)
		}
	}
	key, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		return nil, inconsistent(n.NodeCAKey(), err)
	}
	cur, _ := pki.ParseCert([]byte(vals[n.NodeCACert()]))
	names := f.nodeCANames(cur, adopt)
	if cur != nil && pki.MatchesKey(cur, key) == nil && pki.CheckNodeCA(cur, root.Cert, f.Now()) == nil {
		if have, _ := pki.NodeConstraintsOf(cur); names.Empty() || (!have.Empty() && have.Covers(names)) {
			return &pki.CA{Cert: cur, Key: key}, nil
		}
	}
	var is pki.Issued
	if cur != nil && pki.MatchesKey(cur, key) == nil && f.Now().Before(cur.NotAfter) {
		// The same key keeps its window: a widening or a root's change
		// does not move when the key is due.
		is, err = root.ReissueNodeCA(cur, f.Now(), names)
	} else {
		is, err = root.IssueNodeCA(key.Public(), f.Now(), f.nodeCALifetime(cur), names)
	}
	if err != nil {
		return nil, err
	}
	if err := putOrCreate(ctx, f.Store, n, n.NodeCACert(), string(pki.EncodeCert(is.Cert))); err != nil {
		return nil, err
	}
	return &pki.CA{Cert: is.Cert, Key: key}, nil
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
// from a node-issuing CA under the CA that is current.
func (f *Fleet) reissueNodeCA(ctx context.Context, n Names, s *rotation, ca *pki.CA) error {
	if !pki.AllowsIntermediates(ca.Cert) {
		return nil
	}
	_, err := f.ensureNodeCAFrom(ctx, n, s.vals, ca, false)
	return err
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
