package certs

// The root-signed trust state (pki.TrustState), kept under <prefix>/ca-bundle:
// nodes on every IAM policy since the first can read it, and nobody can
// create that name with an unsigned bundle that anyone then takes.
//
// Who reads it from what:
//   - a node and a client: from the roots of the state they hold (or, for
//     one from before it, the CAs they trust), so a write without a root key
//     changes nothing they trust; a refused state is reported and the held
//     trust kept;
//   - a joining machine: from its pin, through the state's lineage, or,
//     unpinned, from the store's root (trust on first use, said loudly);
//   - an operator's command: from the CAs whose keys the store holds (the
//     current, pending and previous ca-cert).
//
// Who writes it: only flows that hold a root key (the first node creating
// the fleet, the rotation steps, node-ca, revoke, `certs trust sign`), each
// signing it with the CA that is current when it writes.

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// ErrNoTrustState: a reader that holds a trust state found none it could
// take in the store: it keeps its own.
var ErrNoTrustState = errors.New("the store holds no signed trust state this reader can take")

// trustOf is whom a reader trusts given the store's ca-bundle value: a
// signed state verified from anchors (never older than held), or, for a
// fleet from before it (a PEM bundle or none), the bundle with the current
// CA. A state that does not verify is an unusableBundle: a node keeps its
// trust past it and a revoke ignores it.
func trustOf(val string, ca *x509.Certificate, n Names, anchors []*x509.Certificate, held *pki.TrustState, revoked map[string]bool, now time.Time) ([]*x509.Certificate, *pki.TrustState, error) {
	if !pki.IsSignedTrust([]byte(val)) {
		trust, err := trustFrom(val, ca, n.Bundle())
		return trust, nil, err
	}
	t, err := pki.VerifyTrust([]byte(val), n.Prefix, anchors, held, revoked)
	if err == nil {
		if why := t.AheadOf(now); why != "" {
			err = fmt.Errorf("%w: %s", pki.ErrTrustRollback, why)
		}
	}
	if err != nil {
		return nil, nil, unusableBundle{fmt.Errorf("%w: secret %s: %v. If no operator signed it (`joblet certs trust sign` or a rotation step), someone without the root key wrote to the store: restore its previous version and find out who", ErrInconsistentStore, n.Bundle(), err)}
	}
	return t.RootCerts(), t, nil
}

// operatorAnchors are the CAs an operator's command takes a trust state
// from: the current ca-cert, and the pending one only when the store's
// cross certificate (which only the current CA's key can make) links it to
// the current one. Never a CA found only in the store's version history
// (AWSPREVIOUS): anyone who can write a secret can put one there.
func (s *state) operatorAnchors() []*x509.Certificate {
	var a []*x509.Certificate
	if s.ca != nil {
		a = append(a, s.ca)
	}
	if p := s.pendingCA(); p != nil && s.ca != nil && s.cross != nil && pki.IsCrossOf(s.cross, p, s.ca) {
		a = append(a, p)
	}
	return a
}

// parseTrust sets the trust from the bundle value, from the anchors given
// (the operator's when none), then the CRL against it.
func (s *state) parseTrust(anchors []*x509.Certificate, held *pki.TrustState) {
	if anchors == nil {
		anchors = s.operatorAnchors()
	}
	s.doc, s.docRaw = nil, ""
	// The store's CRL, unverified here (it is verified against the trust
	// this decides): it can only cut links, never add one.
	s.trust, s.doc, s.trustErr = trustOf(s.vals[s.n.Bundle()], s.ca, s.n, anchors, held, revokedSerials(s.vals[s.n.CRL()]), s.now)
	if s.trustErr == nil {
		if s.doc != nil {
			s.docRaw = s.vals[s.n.Bundle()]
		}
		s.useTrust(s.trust)
	}
}

// holdTrust is a node's or a client's trust after a read: the store's
// state when it verifies from what the reader holds (heldCA, the PEM roots,
// and heldDoc, the state they came from), else what it holds, with the
// problem said. A reader from before the trust state (no heldDoc) reads a
// bundle as before, and takes a signed state from the CAs it trusts: how it
// moves onto it.
func (s *state) holdTrust(heldCA, heldDoc, heldCRL string) (problem string, err error) {
	held, _ := pki.PeekTrust([]byte(heldDoc), s.n.Prefix)
	heldRoots, _ := pki.ParseCerts([]byte(heldCA))
	if held != nil {
		heldRoots = held.RootCerts()
	}
	stored := s.vals[s.n.Bundle()]
	if held == nil && !pki.IsSignedTrust([]byte(stored)) {
		return s.keepHeldTrust(heldCA)
	}
	if len(heldRoots) == 0 {
		return "", s.trustErr
	}
	if !pki.IsSignedTrust([]byte(stored)) {
		s.keepTrust(heldRoots, held, heldDoc)
		what := "is missing"
		if stored != "" {
			what = "holds no signed trust state"
		}
		return fmt.Sprintf("%v: secret %s %s: ignored; keeping the trust state held (version %d). If no operator deleted it, someone without the root key wrote to the store: `joblet certs trust sign` writes it again", ErrNoTrustState, s.n.Bundle(), what, held.Version), nil
	}
	trust, doc, terr := trustOf(stored, s.ca, s.n, heldRoots, held, revokedSerials(heldCRL), s.now)
	if terr != nil {
		s.keepTrust(heldRoots, held, heldDoc)
		return fmt.Sprintf("%v: ignored; keeping the %d CA(s) held", terr, len(heldRoots)), nil
	}
	s.doc, s.docRaw = doc, stored
	s.useTrust(trust)
	return "", nil
}

// keepTrust makes s trust what the reader holds (heldDoc, the envelope).
func (s *state) keepTrust(roots []*x509.Certificate, held *pki.TrustState, heldDoc string) {
	s.doc, s.docRaw = held, heldDoc
	s.useTrust(roots)
}

// docValue is the signed state the reader ends with, byte for byte as
// verified or held ("" for a fleet from before it): what a node or client
// stores beside its trust. Never the store's value unless that verified:
// a forged state of the held version must not become the held one.
func (s *state) docValue() string {
	if s.doc == nil {
		return ""
	}
	return s.docRaw
}

// docFromStore reports whether s.doc is the store's state, verified (not
// one held).
func (s *state) docFromStore() bool {
	return s.doc != nil && s.docRaw != "" && s.docRaw == s.vals[s.n.Bundle()]
}

// signTrust writes a trust state trusting roots, signed by by (the CA
// current for this write), when the store's differs: in roots, lineage or
// minimum CRL number, or is unsigned, or is half-way to its expiry. The
// lineage is the held one (or the first root), plus the store's cross
// certificate when it links two of these roots, minus any link to drop's
// key (an aborted CA: whoever holds its key must not sign trust states).
func (f *Fleet) signTrust(ctx context.Context, s *state, by *pki.CA, roots []*x509.Certificate, drop *x509.Certificate) (bool, error) {
	n := s.n
	var lineage []*x509.Certificate
	if s.doc != nil {
		lineage = s.doc.LineageCerts()
	} else {
		lineage = []*x509.Certificate{s.ca}
	}
	// A link only from a root already trusted (the verified state's, or
	// the current CA) to one of roots: anyone can make a certificate for a
	// root's public key signed by a key of their own.
	trusted := []*x509.Certificate{s.ca}
	if s.doc != nil {
		trusted = s.doc.RootCerts()
	}
	if s.cross != nil {
		for _, a := range roots {
			for _, b := range trusted {
				if !a.Equal(b) && pki.IsCrossOf(s.cross, a, b) && !containsCert(lineage, s.cross) {
					lineage = append(lineage, s.cross)
				}
			}
		}
	}
	if drop != nil {
		lineage = slices.DeleteFunc(slices.Clone(lineage), func(c *x509.Certificate) bool { return pki.SameKey(c, drop) })
	}
	var minCRL *big.Int
	if crl, err := pki.ParseCRL([]byte(s.vals[n.CRL()]), roots); err == nil {
		minCRL = crl.Number
	}
	if s.doc != nil && s.doc.MinCRL != nil && (minCRL == nil || minCRL.Cmp(s.doc.MinCRL) < 0) {
		minCRL = s.doc.MinCRL
	}
	// Above any version the store holds now (another step may have
	// signed one since s was read), and above the clock's seconds.
	var version uint64 = 1
	if s.doc != nil {
		version = s.doc.Version + 1
	}
	// A state another step wrote since s was read keeps its node-issuing
	// CAs listed (a re-key lists its new CA before writing it).
	var since []*x509.Certificate
	if cur, err := f.Store.Get(ctx, []string{n.Bundle()}); err == nil {
		anchors := append(s.operatorAnchors(), by.Cert)
		if t, err := pki.VerifyTrust([]byte(cur[n.Bundle()]), n.Prefix, anchors, nil, nil); err == nil {
			since = t.NodeCACerts()
			if t.Version >= version {
				version = t.Version + 1
			}
		}
	}
	if t := uint64(f.Now().Unix()); t > version {
		version = t
	}
	next := pki.NewTrustState(n.Prefix, version, roots, lineage, minCRL, f.Now()).WithNodeCAs(s.servingNodeCAs(f.Now(), since...)...)
	next.MinIdentityPolicy = s.minIdentityPolicy(roots)
	if s.doc != nil && s.docFromStore() && !s.doc.Due(f.Now()) && sameTrust(s.doc, next) && pki.TrustSignedBy([]byte(s.vals[n.Bundle()]), n.Prefix, by.Cert) {
		return false, nil
	}
	data, err := pki.SignTrust(ctx, next, by)
	if err != nil {
		return false, err
	}
	if err := putOrCreate(ctx, f.Store, n, n.Bundle(), string(data)); err != nil {
		return false, fmt.Errorf("write the signed trust state (%s): %w", n.Bundle(), err)
	}
	s.vals[n.Bundle()] = string(data)
	s.doc, s.docRaw = next, string(data)
	f.rememberSeen(next, s.docRaw)
	return true, nil
}

// sameTrust: a and b trust the same roots through the same lineage with
// the same minimum CRL number, node-issuing CAs and minimum identity
// policy.
func sameTrust(a, b *pki.TrustState) bool {
	return sameSet(a.RootCerts(), b.RootCerts()) && sameSet(a.LineageCerts(), b.LineageCerts()) && sameNum(a.MinCRL, b.MinCRL) &&
		sameSet(a.NodeCACerts(), b.NodeCACerts()) && a.MinIdentityPolicy == b.MinIdentityPolicy
}

// servingNodeCAs are the node-issuing CAs a new trust state lists: the
// store's current one, the one a re-key just replaced (nodes still serve
// from it until they renew), and those the held state listed, minus any
// the CRL revokes or that expired: a replaced node-issuing key then signs
// nothing a client holding the state accepts.
func (s *state) servingNodeCAs(now time.Time, more ...*x509.Certificate) []*x509.Certificate {
	var out []*x509.Certificate
	cands := append([]*x509.Certificate{s.replacedNodeCA}, more...)
	if s.nodeCA != nil {
		cands = append(cands, s.nodeCA.Cert)
	}
	if s.doc != nil {
		cands = append(cands, s.doc.NodeCACerts()...)
	}
	for _, c := range cands {
		if c == nil || s.revoked[c.SerialNumber.Text(16)] || !now.Before(c.NotAfter) || containsCert(out, c) {
			continue
		}
		out = append(out, c)
	}
	return out
}

func sameSet(a, b []*x509.Certificate) bool {
	if len(a) != len(b) {
		return false
	}
	for _, c := range a {
		if !containsCert(b, c) {
			return false
		}
	}
	return true
}

func sameNum(a, b *big.Int) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Cmp(b) == 0
}

// TrustSignResult says what `joblet certs trust sign` did.
type TrustSignResult struct {
	Signed  bool       `json:"signed"`
	Version uint64     `json:"version"`
	Roots   []CertInfo `json:"roots"`
	// Dropped are CAs a bundle from before the signed state trusted that
	// no key of the fleet vouches for: no longer trusted by anyone.
	Dropped []CertInfo `json:"dropped,omitempty"`
	Expires string     `json:"expires"`
	Next    string     `json:"next"`
}

// SignTrustState makes the fleet's trust a signed state, or re-signs it
// when due: the move of a fleet from before it (its bundle's CAs kept only
// where a key of the fleet vouches for them: the current CA, and during a
// rotation the other CA linked to it by the cross certificate), and the
// scheduled step that keeps it fresh. Idempotent: a fresh state is left
// alone.
func (fl *Fleet) SignTrustState(ctx context.Context) (*TrustSignResult, error) {
	f := fl.defaults()
	sc := operatorScope
	sc.previousCA = true
	s, err := f.readState(ctx, sc)
	if err != nil {
		return nil, err
	}
	problem := s.ignoreUnusableBundle()
	by, err := s.signer(ctx, &f)
	if err != nil {
		return nil, err
	}
	roots := []*x509.Certificate{s.ca}
	// Only a CA the current root cross-signed (a rotation's incoming CA);
	// a certificate for the current root's key signed by another key
	// proves nothing (anyone can make one).
	vouched := func(c *x509.Certificate) bool {
		return c != nil && s.cross != nil && pki.IsCrossOf(s.cross, c, s.ca)
	}
	res := &TrustSignResult{}
	seen := map[string]bool{}
	candidates := append([]*x509.Certificate{s.pendingCA()}, s.trust...)
	if s.doc != nil {
		candidates = append(candidates, s.doc.RootCerts()...)
	}
	for _, c := range candidates {
		if c == nil || containsCert(roots, c) {
			continue
		}
		if vouched(c) || (s.doc != nil && s.doc.Trusts(c)) {
			roots = append(roots, c)
		} else if !seen[pki.Fingerprint(c)] {
			seen[pki.Fingerprint(c)] = true
			res.Dropped = append(res.Dropped, infoOf(c))
		}
	}
	if problem != "" {
		f.Log.Warn("the store's trust bundle was unusable and is replaced", "problem", problem)
	}
	signed, err := f.signTrust(ctx, s, by, roots, nil)
	if err != nil {
		return nil, err
	}
	res.Signed, res.Version, res.Expires = signed, s.doc.Version, s.doc.Expires.UTC().Format("2006-01-02T15:04:05Z")
	for _, r := range roots {
		res.Roots = append(res.Roots, infoOf(r))
	}
	res.Next = "nothing to do until " + s.doc.Issued.Add(s.doc.Expires.Sub(s.doc.Issued)/2).UTC().Format("2006-01-02") + "; run this on a schedule (daily) to keep it fresh"
	if signed {
		res.Next = "nodes take it at their next refresh and clients at `rnx config refresh`; " + res.Next
	}
	return res, nil
}

// crlGap says, when doc names a CRL newer than the one held (crlPEM), that
// this node must not serve until it has it: a node joining after the CRL
// secret was deleted would otherwise accept what the fleet revoked.
func crlGap(doc *pki.TrustState, crlPEM string) string {
	if doc == nil || doc.MinCRL == nil {
		return ""
	}
	held, _ := pki.PeekCRLNumber([]byte(crlPEM))
	if held != nil && held.Cmp(doc.MinCRL) >= 0 {
		return ""
	}
	have := "none"
	if held != nil {
		have = numText(held)
	}
	return fmt.Sprintf("the fleet's trust state names CRL number %s and this node holds %s: it refuses every call until it has that CRL (from the store, a push, or a client that carries it)", numText(doc.MinCRL), have)
}

// resignTrust is signTrust for a step that must complete: the rotation
// steps. A fleet from before the signed state gets one (the step's own
// roots, which its keys vouch for).
func (f *Fleet) resignTrust(ctx context.Context, s *state, by *pki.CA, roots []*x509.Certificate, drop *x509.Certificate) error {
	_, err := f.signTrust(ctx, s, by, roots, drop)
	return err
}

// rootVouched refuses a read whose ca-cert the signed trust state does not
// list: written without the root key, or a step interrupted; either way
// nothing may be issued or joined from it.
func (s *state) rootVouched() error {
	if s.doc != nil && s.doc.Expired(s.now) {
		return fmt.Errorf("%w: the store's signed trust state (%s, version %d) expired on %s: an operator runs `joblet certs trust sign` (daily); a join takes no expired state (it may be an older one put back)",
			ErrInconsistentStore, s.n.Bundle(), s.doc.Version, s.doc.Expires.UTC().Format(time.RFC3339))
	}
	if s.doc == nil || s.ca == nil || s.doc.TrustsKey(s.ca) {
		return nil
	}
	return fmt.Errorf("%w: %s holds a root (%s) that the signed trust state (%s, version %d) does not list: written without the root key, or a rotation step interrupted; `joblet certs status` says which",
		ErrInconsistentStore, s.n.CACert(), pki.Fingerprint(s.ca), s.n.Bundle(), s.doc.Version)
}

// signedFirstState is a fleet's first trust state: its root alone, the
// first link of its lineage.
func signedFirstState(ctx context.Context, n Names, ca *pki.CA, nodeCA *x509.Certificate, crlPEM string, now time.Time) (string, error) {
	minCRL, _ := pki.PeekCRLNumber([]byte(crlPEM))
	t := pki.NewTrustState(n.Prefix, uint64(now.Unix()), []*x509.Certificate{ca.Cert}, []*x509.Certificate{ca.Cert}, minCRL, now).WithNodeCAs(nodeCA)
	data, err := pki.SignTrust(ctx, t, ca)
	return string(data), err
}

// ensureTrustState gives a fleet this run created (or an operator's run
// finds without any trust bundle) its first signed trust state. Create
// only: of concurrent first nodes, one state wins and the others adopt it.
func (b *bootstrapper) ensureTrustState(ctx context.Context, vals map[string]string, sh *shared, created bool) error {
	n := b.names
	if vals[n.Bundle()] != "" || sh.ca.Key == nil || !(created || (b.operator && !b.waited)) {
		return nil
	}
	doc, err := signedFirstState(ctx, n, &sh.ca, sh.issuer.Cert, sh.crlPEM, b.f.Now())
	if err != nil {
		return err
	}
	// Retried like every create of a fleet starting at once (a burst
	// throttles creates; the node that made the fleet must finish it).
	if err := b.createOrAdopt(ctx, n.Bundle(), doc); err != nil {
		if !errors.Is(err, secretstore.ErrExist) {
			return fmt.Errorf("write the fleet's signed trust state (%s): %w", n.Bundle(), err)
		}
		// Lost to another writer, or to this node's own create whose
		// answer was lost: read back patiently, as a claim's read back is
		// (a burst reads the store at once; a throttle is no reason to
		// fail the node).
		got, rerr := getPatiently(ctx, b.f.Store, []string{n.Bundle()})
		if rerr != nil {
			return fmt.Errorf("read %s after losing the race to create it: %w", n.Bundle(), rerr)
		}
		doc = got[n.Bundle()]
		if _, err := pki.VerifyTrust([]byte(doc), n.Prefix, []*x509.Certificate{sh.ca.Cert}, nil, nil); err != nil {
			return fmt.Errorf("%w: %s was created by another writer and %v", ErrInconsistentStore, n.Bundle(), err)
		}
	}
	sh.doc = doc
	return nil
}

// listNodeCAs signs a trust state listing the node-issuing CA now in the
// store (nca) and the one it replaced (nil: none), for a fleet that has a
// signed state.
func (f *Fleet) listNodeCAs(ctx context.Context, s *state, root *pki.CA, nca *pki.CA, replaced *x509.Certificate) error {
	if s.doc == nil {
		return nil
	}
	s.nodeCA, s.replacedNodeCA = nca, replaced
	_, err := f.signTrust(ctx, s, root, s.trust, nil)
	return err
}
