package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"

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
	Next     string    `json:"next"`
}

// StepNodeCARekeyed: a new key and certificate for the node-issuing CA.
const StepNodeCARekeyed = "node-ca-rekeyed"

// RekeyNodeCA gives the node-issuing CA a new key (after a node was
// stolen: its holder has the old key, which signs server certificates
// every client accepts). The key goes first, then its certificate; nodes
// renew from it on their next refresh; then revoking the old certificate's
// serial makes every chain through it refused, by nodes and by rnx. A
// re-run after a crash between the two writes completes the pair.
func (fl *Fleet) RekeyNodeCA(ctx context.Context) (*NodeCAResult, error) {
	f := fl.defaults()
	s, root, err := f.readWithRoot(ctx, false)
	if err != nil {
		return nil, err
	}
	n := s.n
	old, err := pki.ParseCert([]byte(s.vals[n.NodeCACert()]))
	if err != nil || !pki.AllowsIntermediates(root.Cert) {
		return nil, fmt.Errorf("%w: the fleet has no node-issuing CA to re-key: run `joblet certs node-ca` first", ErrUsage)
	}
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
	nca, err := f.ensureNodeCAFrom(ctx, n, map[string]string{n.NodeCAKey(): string(enc)}, root)
	if err != nil {
		return nil, err
	}
	if err := f.listNodeCAs(ctx, s, root, nca, old); err != nil {
		return nil, err
	}
	info, replaced := infoOf(nca.Cert), infoOf(old)
	return &NodeCAResult{Step: StepNodeCARekeyed, Root: infoOf(root.Cert), NodeCA: &info, Replaced: &replaced,
		Next: fmt.Sprintf("nodes renew from the new node-issuing CA on their next refresh (or now: `joblet certs renew` on each; `joblet certs status` on a node shows its issuer). Then revoke the old one, which refuses every chain through it: `joblet certs revoke --serial %s --reason keyCompromise`", replaced.Serial)}, nil
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
	switch {
	case s.nodeCA == nil && s.vals[n.NodeCAKey()] == "" && s.vals[n.NodeCACert()] == "":
		res.Step = StepNodeCACreated
	case s.nodeCA == nil || s.nodeCA.Cert.CheckSignatureFrom(root.Cert) != nil:
		res.Step = StepNodeCAReissued
	}
	nca, err := f.ensureNodeCAFrom(ctx, n, s.vals, root)
	if err != nil {
		return nil, err
	}
	if err := f.listNodeCAs(ctx, s, root, nca, nil); err != nil {
		return nil, err
	}
	info := infoOf(nca.Cert)
	res.NodeCA = &info
	res.Next = "nodes renew from the node-issuing CA on their next refresh (or now: `joblet certs renew` on each); `joblet certs status` on a node says whether it still serves a certificate signed by the root. Once every node has, tighten the node policy: `joblet certs iam-policy --for node`"
	if res.Step == StepNothing {
		res.Next = "nothing to do: the fleet issues server certificates from its node-issuing CA"
	}
	return res, nil
}

// ensureNodeCAFrom returns the node-issuing pair signed by root, creating
// the key (create-only) and the certificate when missing, and re-signing
// the certificate for the same key when another CA signed it (a rotation
// step) or it does not match its key. vals holds what was read.
func (f *Fleet) ensureNodeCAFrom(ctx context.Context, n Names, vals map[string]string, root *pki.CA) (*pki.CA, error) {
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
	if c, err := pki.ParseCert([]byte(vals[n.NodeCACert()])); err == nil && pki.MatchesKey(c, key) == nil && pki.CheckNodeCA(c, root.Cert, f.Now()) == nil {
		return &pki.CA{Cert: c, Key: key}, nil
	}
	is, err := root.IssueNodeCA(key.Public(), f.Now(), f.CALifetime)
	if err != nil {
		return nil, err
	}
	if err := putOrCreate(ctx, f.Store, n, n.NodeCACert(), string(pki.EncodeCert(is.Cert))); err != nil {
		return nil, err
	}
	return &pki.CA{Cert: is.Cert, Key: key}, nil
}

// reissueNodeCA re-signs the node-issuing CA from ca when the fleet has
// one (or ca allows one and the fleet moves to it with this rotation):
// called when a rotation step changes the current CA, so nodes renew
// from a node-issuing CA under the CA that is current.
func (f *Fleet) reissueNodeCA(ctx context.Context, n Names, s *rotation, ca *pki.CA) error {
	if !pki.AllowsIntermediates(ca.Cert) {
		return nil
	}
	_, err := f.ensureNodeCAFrom(ctx, n, s.vals, ca)
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
