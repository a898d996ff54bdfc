package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Phase is the fleet's CA rotation phase. It is derived from the store by
// phaseOf, never kept apart from it.
type Phase string

const (
	PhaseStable   Phase = "stable"
	PhaseBegun    Phase = "begun"    // new CA pending and trusted; the old one signs
	PhasePromoted Phase = "promoted" // new CA signs; the old one is still trusted
)

// phaseOf derives the rotation phase from what the store holds: a pending
// CA certificate means begun; a pending CA key (or KMS key reference)
// without its certificate, while one CA is trusted, means a begin was
// interrupted between its two writes (also begun, and interrupted says so;
// state.parse adds the later writes a begin makes, see begunComplete); two
// trusted CAs and no pending certificate mean promoted; otherwise stable. pending holds only the pending
// versions that differ from the current ones (readState drops the others:
// a pending label left on the current value by an interrupted promote).
func phaseOf(n Names, pending map[string]string, trusted int) (phase Phase, interrupted bool) {
	switch {
	case pending[n.CACert()] != "":
		return PhaseBegun, false
	case (pending[n.CAKey()] != "" || pending[n.CAKMSKey()] != "") && trusted <= 1:
		// A begin writes the trust state with both roots last: with two
		// roots trusted, a pending key alone is no begin of ours (a
		// promote stopped between its moves, or a version written
		// without the root key), and the fleet stays promoted.
		return PhaseBegun, true
	case trusted > 1:
		return PhasePromoted, false
	}
	return PhaseStable, false
}

// scope says what one flow reads: no more than its IAM policy grants
// (iam-policy's flows mirror these).
type scope struct {
	// caKey: read the current CA's key place, as key says: in KMS that is
	// the key reference ca-kms-key, never ca-key (a KMS node's policy has
	// no access to it); operators (bothKeys) read both.
	caKey, bothKeys bool
	key             CAKeyRef
	// nodeCA: read the node-issuing pair (what a node signs with).
	nodeCA bool
	// userCA: read the user-issuing CA (the issuer's, and the operator's
	// who makes it).
	userCA  bool
	roles   []pki.Role // client pairs to read
	pending bool       // the pending CA versions, for the phase
	// allPending: the roles' pending certificates even when no CA is
	// pending (a promote interrupted after moving the CA's label).
	allPending bool
	// before13 reads what policies from before the node-issuing CA and the
	// cross certificate granted (no node-ca-*, no ca-cross): how an
	// upgraded node on its old IAM policy keeps working until moved.
	before13 bool
	// orBefore13: a read refused for access is read again as before13
	// (readState): the one fallback for a node still on such a policy.
	orBefore13 bool
	// previousCA and previousCRL: the previous versions of ca-cert (the CA
	// a promoted rotation still trusts, for status) and of the CRL (what
	// the last write replaced, for a revoke's merge). Best effort: a store
	// that refuses them leaves them empty.
	previousCA, previousCRL bool
	// operator: an operator's read (also every read with bothKeys): its
	// trust comes from the pin when given and the newest state in the
	// store's history (operatortrust.go); fullHistory walks all of it
	// (status).
	operator, fullHistory bool
	// anchored: the root certificate anchors the read (a join's first
	// look): where the store reads secret by secret (a burst throttled
	// its batch read), a missing root certificate ends it, and the state
	// is read as empty (secretstore.Anchored).
	anchored bool
}

// asBefore13 is sc as a policy from before the node-issuing CA grants it
// (no node-ca-*, no ca-cross): for a node, the root certificate and key
// (or its KMS reference), the trust, the CRL.
func (sc scope) asBefore13() scope {
	sc.before13, sc.orBefore13 = true, false
	return sc
}

// nodeScope is what a node reads to serve and renew (Names.Node): the
// root certificate, the node-issuing pair, the trust and the CRL.
var nodeScope = scope{nodeCA: true}

// bootstrapScope is what a bootstrap reads on its full path (creating a
// fleet, or one from before the node-issuing CA): the CA, its key's place,
// the node-issuing pair, every role.
func bootstrapScope(key CAKeyRef) scope {
	return scope{caKey: true, key: key, nodeCA: true, roles: pki.Roles}
}

// wholeScope is every shared secret of a fleet, both CA key places
// included: what an operator reads, replicates and exports.
var wholeScope = scope{bothKeys: true, nodeCA: true, roles: pki.Roles}

// keyNames are the CA key secrets the scope reads.
func (sc scope) keyNames(n Names) []string {
	switch {
	case sc.bothKeys:
		return []string{n.CAKey(), n.CAKMSKey()}
	case sc.caKey && sc.key.InKMS():
		return []string{n.CAKMSKey()}
	case sc.caKey:
		return []string{n.CAKey()}
	}
	return nil
}

// names are the secrets the scope reads (its pending read aside): every
// list of secrets a flow reads, replicates, exports or is granted is
// derived from here. The order is the one a first node creates them in
// (Names.All, the KMS key reference in the CA key's place after them),
// then what the fleet adds later: the trust bundle, the CRL, the cross
// certificate.
func (sc scope) names(n Names) []string {
	return append(sc.shared(n), sc.fleetWide(n)...)
}

// shared are the scope's secrets a first node creates: the CA, its key's
// place, the role pairs and the node-issuing pair.
func (sc scope) shared(n Names) []string {
	keys := sc.keyNames(n)
	read := []string{n.CACert()}
	if slices.Contains(keys, n.CAKey()) {
		read = append(read, n.CAKey())
	}
	read = append(read, sc.roleNames(n)...)
	if sc.nodeCA && !sc.before13 {
		read = append(read, n.NodeCACert(), n.NodeCAKey())
	}
	if slices.Contains(keys, n.CAKMSKey()) {
		read = append(read, n.CAKMSKey())
	}
	if sc.userCA {
		read = append(read, n.UserCA())
	}
	return read
}

// roleNames are the client pairs the scope reads.
func (sc scope) roleNames(n Names) []string {
	var out []string
	for _, r := range sc.roles {
		out = append(out, n.ClientCert(r), n.ClientKey(r))
	}
	return out
}

// fleetWide are the secrets every scope reads that the fleet's life adds
// (a revoke, a rotation): the trust bundle, the CRL and, unless the scope
// is a policy's from before the node-issuing CA, the cross certificate.
func (sc scope) fleetWide(n Names) []string {
	if sc.before13 {
		return []string{n.Bundle(), n.CRL()}
	}
	return []string{n.Bundle(), n.CRL(), n.CACross(), n.IdentityPolicy()}
}

// state is the fleet's shared state as one read found it, parsed once.
// A part that did not parse is nil with its error set, so status can grade
// what is there and the other flows can refuse with the reason.
type state struct {
	n       Names
	now     time.Time
	vals    map[string]string // current versions of what was read
	pending map[string]string // pending CA versions that differ from the current ones

	ca       *x509.Certificate // the current CA certificate
	previous *x509.Certificate // ca-cert's previous version, when the scope asked (previousCA)
	// previousCRL is the CRL's previous version (PEM), when the scope
	// asked; not verified.
	previousCRL string
	// previousDoc is ca-bundle's previous version, when the scope asked
	// (previousCA): status tells a state put back from it.
	previousDoc string
	caErr       error
	trust       []*x509.Certificate // every trusted CA: the signed state's roots, or (before it) the bundle or the CA alone
	trustErr    error
	// doc is the signed trust state trust came from (truststate.go), nil
	// for a fleet from before it.
	doc *pki.TrustState
	// docRaw is doc's envelope, byte for byte as verified (or held).
	docRaw string
	// rolledBack says that the store's current trust state is older than
	// one in its history, which doc now is (an operator's read).
	rolledBack string
	// foreign are the times of states in the bundle's history signed by a
	// key outside doc's lineage (status's full walk).
	foreign []time.Time
	// historyErr: the bundle's history could not be read (status).
	historyErr error
	// replacedNodeCA is the node-issuing CA a re-key just replaced: listed
	// in the next trust state while nodes move off it.
	replacedNodeCA *x509.Certificate
	revoked        map[string]bool // serials (hex) the CRL lists
	revs           []Revocation
	crlErr         error
	// nodeCA is the node-issuing pair when the store holds a usable one
	// under the current CA; nodeCAErr says why not (nil when there is
	// none: a fleet from before it, which nodes sign for with the root).
	nodeCA    *pki.CA
	nodeCAErr error
	clients   map[pki.Role]*x509.Certificate
	// clientErr says why a role's certificate could not be used.
	clientErr map[pki.Role]error

	// cross is the rotation's cross certificate (ca-cross), nil when
	// there is none or it does not parse.
	cross *x509.Certificate

	// caKey is the current KMS key reference (ca-kms-key) as stored,
	// parsed once: the store (zero) when the scope did not read it or the
	// fleet has none.
	caKey CAKeyRef

	phase       Phase
	interrupted bool // a begin that did not complete (see begunComplete)
}

// readState reads what sc covers in one store call (plus one for the
// pending versions when asked) and parses it. With sc.orBefore13, a read
// refused for access is made again with what a policy from before the
// node-issuing CA grants (asBefore13); its error, if any, is returned.
func (f *Fleet) readState(ctx context.Context, sc scope) (*state, error) {
	n := f.names()
	get := f.Store.Get
	if a, ok := f.Store.(secretstore.Anchored); ok && sc.anchored {
		get = a.GetAnchored // sc.names starts with the root certificate
	}
	vals, err := get(ctx, sc.names(n))
	if sc.orBefore13 && !sc.before13 && errors.Is(err, secretstore.ErrAccessDenied) {
		return f.readState(ctx, sc.asBefore13())
	}
	if err != nil {
		return nil, fmt.Errorf("read the shared certificates from %s: %w", f.StoreDesc, err)
	}
	s := f.newState(vals)
	if sc.pending {
		names := append([]string{n.CACert()}, sc.keyNames(n)...)
		if err := f.readPending(ctx, s, names); err != nil {
			return nil, err
		}
		// The role certificates a begin prepared (see cross.go): only
		// while a CA is pending, so a fleet at rest pays nothing for them.
		if (s.pending[n.CACert()] != "" || sc.allPending) && len(sc.roles) > 0 {
			var clients []string
			for _, r := range sc.roles {
				clients = append(clients, n.ClientCert(r))
			}
			if err := f.readPending(ctx, s, clients); err != nil {
				return nil, err
			}
		}
	}
	s.caKey = f.kmsKey(vals[n.CAKMSKey()])
	s.parse(sc.roles)
	if sc.bothKeys && s.ca == nil {
		s.rootFromState(sc.roles, f.Log)
	}
	if sc.operator || sc.bothKeys {
		if err := f.operatorTrust(ctx, s, sc.fullHistory); err != nil {
			return nil, err
		}
	}
	if sc.previousCA {
		if prev, err := f.Store.GetStage(ctx, []string{n.CACert(), n.Bundle()}, secretstore.Previous); err == nil {
			s.previous, _ = pki.ParseCert([]byte(prev[n.CACert()]))
			s.previousDoc = prev[n.Bundle()]
		}
	}
	if sc.previousCRL {
		if prev, err := f.Store.GetStage(ctx, []string{n.CRL()}, secretstore.Previous); err == nil {
			s.previousCRL = prev[n.CRL()]
		}
	}
	return s, nil
}

// newState is a state of vals, not parsed yet.
func (f *Fleet) newState(vals map[string]string) *state {
	return &state{n: f.names(), now: f.Now(), vals: vals, pending: map[string]string{}, clients: map[pki.Role]*x509.Certificate{}, clientErr: map[pki.Role]error{}}
}

// readKMSRef reads the KMS key reference (ca-kms-key) alone: how a node or
// an operator whose scope read ca-key learns that the fleet's CA key is in
// KMS. Its policy may not grant it: the caller says what a refusal means.
func (f *Fleet) readKMSRef(ctx context.Context) (CAKeyRef, error) {
	n := f.names()
	got, err := f.Store.Get(ctx, []string{n.CAKMSKey()})
	if err != nil {
		return CAKeyRef{}, fmt.Errorf("read %s: %w", n.CAKMSKey(), err)
	}
	return f.kmsKey(got[n.CAKMSKey()]), nil
}

// readKeysAt reads the current CA certificate and both CA key places, and
// the key places' versions at stage from: what a rotation step compares
// right after moving the certificate's label (alignKeys).
func (f *Fleet) readKeysAt(ctx context.Context, from secretstore.Stage) (cur, other map[string]string, err error) {
	n := f.names()
	if cur, err = f.Store.Get(ctx, []string{n.CACert(), n.CAKey(), n.CAKMSKey()}); err != nil {
		return nil, nil, err
	}
	if other, err = f.Store.GetStage(ctx, []string{n.CAKey(), n.CAKMSKey()}, from); err != nil {
		return nil, nil, err
	}
	return cur, other, nil
}

// readPending adds to s.pending the pending versions of names that differ
// from the current ones.
func (f *Fleet) readPending(ctx context.Context, s *state, names []string) error {
	pend, err := f.Store.GetStage(ctx, names, secretstore.Pending)
	if err != nil {
		return fmt.Errorf("read the pending versions from %s: %w", f.StoreDesc, err)
	}
	for name, v := range pend {
		if v != s.vals[name] {
			s.pending[name] = v
		}
	}
	return nil
}

func (s *state) parse(roles []pki.Role) {
	n := s.n
	s.revoked = map[string]bool{}
	switch pem := s.vals[n.CACert()]; {
	case pem == "":
		s.caErr = fmt.Errorf("there is no CA in the store under %q: run `joblet certs bootstrap` first", n.Prefix)
	default:
		if c, err := pki.ParseCert([]byte(pem)); err != nil {
			s.caErr = inconsistent(n.CACert(), err)
		} else {
			s.ca = c
		}
	}
	if c, err := pki.ParseCert([]byte(s.vals[n.CACross()])); err == nil {
		s.cross = c
	}
	if s.ca != nil {
		s.parseTrust(nil, nil)
	}
	for _, r := range roles {
		c, err := pki.ParseCert([]byte(s.vals[n.ClientCert(r)]))
		if err != nil {
			s.clientErr[r] = inconsistent(n.ClientCert(r), err)
			continue
		}
		s.clients[r] = c
	}
	s.phase, s.interrupted = phaseOf(n, s.pending, len(s.trust))
	if s.phase == PhaseBegun && !s.interrupted {
		s.interrupted = !s.begunComplete(roles)
	}
}

// parseIssuer parses the node-issuing pair against the trust as it now
// is: the signed state's roots alone (the store's ca-cert is vouched for by
// nothing else), or, before it, those and the current CA.
func (s *state) parseIssuer() {
	s.nodeCA, s.nodeCAErr = nil, nil
	if s.ca == nil || (s.vals[s.n.NodeCACert()] == "" && s.vals[s.n.NodeCAKey()] == "") {
		return
	}
	roots := s.trust
	if s.doc == nil {
		roots = append([]*x509.Certificate{s.ca}, s.trust...)
	}
	s.nodeCA, s.nodeCAErr = parseNodeCA(s.n, s.vals, roots, s.now)
}

// parseNodeCA checks the stored node-issuing pair: a matching pair, signed
// by a trusted CA and constrained (pki.CheckNodeCA). During a rotation's
// promote the pair may still be the old CA's for a moment: that is fine
// while the old CA is trusted.
func parseNodeCA(n Names, vals map[string]string, roots []*x509.Certificate, now time.Time) (*pki.CA, error) {
	nca, err := parsePair(vals[n.NodeCACert()], vals[n.NodeCAKey()], n.NodeCACert(), n.NodeCAKey())
	if err != nil {
		return nil, fmt.Errorf("%w. An operator runs `joblet certs node-ca`: it completes the pair when the signed trust state lists its key, and otherwise replaces the key with a new one (it never certifies a key the state does not list)", err)
	}
	var cerr error
	if len(roots) == 0 {
		return nil, fmt.Errorf("%w: %s: no trusted root to check it against", ErrInconsistentStore, n.NodeCACert())
	}
	for _, root := range roots {
		if !pki.AllowsIntermediates(root) {
			cerr = fmt.Errorf("the CA %s was made before node-issuing CAs and allows no CA under it (pathlen 0); run `joblet certs node-ca`, which re-issues it first", pki.Fingerprint(root))
			continue
		}
		if cerr = pki.CheckNodeCA(nca.Cert, root, now); cerr == nil {
			return nca, nil
		}
	}
	return nil, fmt.Errorf("%w: %s: %v. Re-issue it with `joblet certs node-ca`", ErrInconsistentStore, n.NodeCACert(), cerr)
}

// trusted is the CA, the trust and the CRL, or the first error among them:
// what every flow that serves or signs needs.
func (s *state) trusted() error {
	for _, err := range []error{s.caErr, s.trustErr, s.crlErr} {
		if err != nil {
			return err
		}
	}
	return nil
}

// signer is the current CA with its key, found among the keys read (an
// operator's read: ca-key and ca-kms-key).
func (s *state) signer(ctx context.Context, f *Fleet) (*pki.CA, error) {
	if s.caErr != nil {
		return nil, s.caErr
	}
	key, _, err := f.caSigner(ctx, s.ca, []string{s.vals[s.n.CAKey()]}, []CAKeyRef{s.caKey})
	if err != nil {
		return nil, err
	}
	return &pki.CA{Cert: s.ca, Key: key}, nil
}

// trustPEM is what nodes and clients trust.
func (s *state) trustPEM() string { return string(pki.EncodeCerts(s.trust...)) }

// trustFrom parses the stored bundle (empty: none) and makes sure the
// current CA is in it: a node must always trust the CA it is signed by.
func trustFrom(bundlePEM string, current *x509.Certificate, name string) ([]*x509.Certificate, error) {
	trust := []*x509.Certificate{current}
	if bundlePEM == "" {
		return trust, nil
	}
	certs, err := pki.ParseCerts([]byte(bundlePEM))
	if err != nil {
		return nil, unusableBundle{fmt.Errorf("%w: secret %s does not hold a usable certificate bundle (%v). Restore its previous version", ErrInconsistentStore, name, err)}
	}
	for _, c := range certs {
		if !c.Equal(current) {
			trust = append(trust, c)
		}
	}
	return trust, nil
}

// rootFromState lets a signing flow (revoke, trust sign, a rotation step)
// run past a ca-cert that does not parse (one write without the root key):
// the root is in the signed trust state, and the stored ca-key proves it is
// the one whose key this flow holds. The state must verify from that root.
// Status is not given this: it reports the ca-cert as it is.
func (s *state) rootFromState(roles []pki.Role, log *slog.Logger) {
	key, err := pki.ParseKey([]byte(s.vals[s.n.CAKey()]))
	if err != nil {
		return
	}
	bundle := []byte(s.vals[s.n.Bundle()])
	t, err := pki.PeekTrust(bundle, s.n.Prefix)
	if err != nil {
		return
	}
	for _, r := range t.RootCerts() {
		if pki.MatchesKey(r, key) != nil {
			continue
		}
		if _, err := pki.VerifyTrust(bundle, s.n.Prefix, []*x509.Certificate{r}, nil, nil); err != nil {
			return
		}
		log.Warn("the store's root certificate does not parse: using the root the signed trust state lists for the root key", "secret", s.n.CACert(), "error", s.caErr, "root", pki.Fingerprint(r))
		s.vals[s.n.CACert()] = string(pki.EncodeCert(r))
		s.caErr, s.clients, s.clientErr = nil, map[pki.Role]*x509.Certificate{}, map[pki.Role]error{}
		s.parse(roles)
		return
	}
}
