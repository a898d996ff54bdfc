package pki

// The fleet's trust state: what nodes and clients trust, in one document
// the root signs, versioned and with an expiry (TUF's signed, versioned
// metadata, with its rollback and freeze rules). A store write without a
// root key cannot make a document any reader accepts, so it changes
// nobody's trust.
//
// Format: a DSSE envelope (Dead Simple Signing Envelope, the signature
// format of in-toto and sigstore, the successor TUF's authors designed)
// around a JSON payload. DSSE signs the payload type with the payload, so
// the root's signature on a trust state can never be replayed as anything
// else; the maintained go-securesystemslib/dsse package encodes and checks
// it. X.509 objects alone cannot carry a version, an expiry and a minimum
// CRL number together; PKCS#7 would need a less maintained library for
// the same thing. The signature is the root key's (a store key or AWS KMS,
// any crypto.Signer) over SHA-256, checked with crypto/x509.

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// TrustPayloadType names the payload: a signature over a trust state is
// valid for nothing else.
const TrustPayloadType = "application/vnd.joblet.trust-state.v1+json"

// TrustLifetime is how long a signed trust state is fresh. Every step that
// changes trust signs a new one; `joblet certs trust sign`, run on a
// schedule, re-signs it once half of this has passed. A node holding an
// expired one knows it missed updates (it says so) and keeps enforcing
// it: there is nothing safer to fall back to.
const TrustLifetime = 30 * 24 * time.Hour

// MaxTrustSize bounds what a reader parses (a handful of certificates).
const MaxTrustSize = 64 << 10

// ErrTrustUnsigned: the bytes are not a signed trust state (a PEM bundle
// from before it, or junk).
var ErrTrustUnsigned = errors.New("not a signed trust state")

// ErrTrustSignature: a trust state not signed by a root the reader trusts.
var ErrTrustSignature = errors.New("the trust state is not signed by a root this reader trusts")

// ErrTrustRollback: a trust state older than the one the reader holds.
var ErrTrustRollback = errors.New("the trust state is older than the one held")

// TrustState is what the root vouches for.
type TrustState struct {
	// Fleet is the store prefix: a fleet's state is never another's.
	Fleet   string    `json:"fleet"`
	Version uint64    `json:"version"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	// Roots are the trusted root CAs (DER): the current one, and during a
	// rotation the incoming or the outgoing one.
	Roots [][]byte `json:"roots"`
	// Lineage links every root the fleet ever had (DER): its first root,
	// then each rotation's cross certificate (the outgoing root signing the
	// incoming one's key). A pin of any earlier root reaches the current
	// one through it, however many versions the store has dropped.
	Lineage [][]byte `json:"lineage,omitempty"`
	// MinCRL is the number of the newest CRL the root signed: a node
	// holding an older one (or none) refuses to serve until it has it.
	MinCRL *big.Int `json:"minCrl,omitempty"`
	// NodeCAs are the node-issuing CAs (DER) nodes may serve from: the
	// current one and, while nodes move off it, the one it replaced. A
	// client holding this state refuses a server chain through any other,
	// so a node-issuing key that was replaced signs nothing it accepts.
	NodeCAs [][]byte `json:"nodeCas,omitempty"`
	// MinIdentityPolicy is the version of the newest identity policy the
	// root signed (rnx login): a reader takes no older one, so a policy
	// put back without the root key does not undo a removal or a deny.
	MinIdentityPolicy uint64 `json:"minIdentityPolicy,omitempty"`

	roots, lineage, nodeCAs []*x509.Certificate
}

// WithNodeCAs sets the node-issuing CAs t lists (duplicates dropped).
func (t *TrustState) WithNodeCAs(cas ...*x509.Certificate) *TrustState {
	t.nodeCAs, t.NodeCAs = nil, nil
	for _, c := range cas {
		if c != nil && !containsCert(t.nodeCAs, c) {
			t.nodeCAs = append(t.nodeCAs, c)
			t.NodeCAs = append(t.NodeCAs, c.Raw)
		}
	}
	return t
}

// NodeCACerts are the listed node-issuing CAs, parsed.
func (t *TrustState) NodeCACerts() []*x509.Certificate { return t.nodeCAs }

// AllowsServerChain reports whether a verified server chain (leaf first,
// root last) is one t lets a client accept: issued by the root itself,
// through a node-issuing CA whose key t lists, or through one the root
// issued after t was signed. A state that lists none (from before it)
// allows any.
//
// A node-issuing CA newer than the state is one the holder cannot know
// yet (the scheduled re-key makes one a week, and a client need not
// refresh for it): only the root signs one, so it is no replaced key's.
// What t does not list and was issued before t is one t dropped (a
// replaced key, a revoked one): refused.
func (t *TrustState) AllowsServerChain(chain []*x509.Certificate) bool {
	return len(chain) < 3 || t.AllowsNodeCA(chain[1])
}

// AllowsNodeCA: t lists no node-issuing CAs, or one for nca's key, or nca
// was issued after t (a re-key a reader has not seen the listing of yet).
func (t *TrustState) AllowsNodeCA(nca *x509.Certificate) bool {
	if len(t.nodeCAs) == 0 {
		return true
	}
	for _, n := range t.nodeCAs {
		if bytes.Equal(n.RawSubjectPublicKeyInfo, nca.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	return IssuedAt(nca).After(t.Issued)
}

// NewTrustState is a state trusting roots, with lineage, fresh from now.
func NewTrustState(fleet string, version uint64, roots, lineage []*x509.Certificate, minCRL *big.Int, now time.Time) *TrustState {
	t := &TrustState{Fleet: fleet, Version: version, Issued: now.UTC().Truncate(time.Second), MinCRL: minCRL}
	t.Expires = t.Issued.Add(TrustLifetime)
	for _, r := range roots {
		if !containsCert(t.roots, r) {
			t.roots = append(t.roots, r)
			t.Roots = append(t.Roots, r.Raw)
		}
	}
	for _, l := range lineage {
		if !containsCert(t.lineage, l) {
			t.lineage = append(t.lineage, l)
			t.Lineage = append(t.Lineage, l.Raw)
		}
	}
	return t
}

// RootCerts are the trusted roots, parsed.
func (t *TrustState) RootCerts() []*x509.Certificate { return t.roots }

// LineageCerts are the lineage, parsed.
func (t *TrustState) LineageCerts() []*x509.Certificate { return t.lineage }

// Expired reports whether the state is past its expiry.
func (t *TrustState) Expired(now time.Time) bool { return !now.Before(t.Expires) }

// Due reports whether half its life has passed: time to re-sign it.
func (t *TrustState) Due(now time.Time) bool {
	return !now.Before(t.Issued.Add(t.Expires.Sub(t.Issued) / 2))
}

// SignTrust signs t with ca, one of t's roots.
func SignTrust(ctx context.Context, t *TrustState, ca *CA) ([]byte, error) {
	if !containsCert(t.roots, ca.Cert) {
		return nil, fmt.Errorf("sign the trust state: the signing root %s is not among the roots it trusts", Fingerprint(ca.Cert))
	}
	body, err := json.Marshal(t)
	if err != nil {
		return nil, err
	}
	return SignEnvelope(ctx, TrustPayloadType, body, ca)
}

// IsSignedTrust reports whether data looks like a trust state envelope
// (as opposed to a PEM bundle): the readers' way to tell old from new.
func IsSignedTrust(data []byte) bool {
	return bytes.HasPrefix(bytes.TrimSpace(data), []byte("{"))
}

// PeekTrust parses a trust state without checking its signature: for
// reports, for a reader's own copy, and for a signer choosing the next
// version. Never trust it from the store. fleet "" takes any fleet's.
func PeekTrust(data []byte, fleet string) (*TrustState, error) {
	t, _, err := decodeTrust(data, fleet)
	return t, err
}

// PeekTrustVersion reads only the version of a trust state (and checks
// its fleet; "" takes any), without parsing its certificates or checking
// its signature: the cheap first look at a state a caller offers, so that
// one not newer than the held state costs no more than its JSON. Never
// trust it.
func PeekTrustVersion(data []byte, fleet string) (uint64, error) {
	if len(data) > MaxTrustSize {
		return 0, fmt.Errorf("%w: %d bytes, more than the %d a trust state may hold", ErrTrustUnsigned, len(data), MaxTrustSize)
	}
	if !IsSignedTrust(data) {
		return 0, ErrTrustUnsigned
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrTrustUnsigned, err)
	}
	if env.PayloadType != TrustPayloadType {
		return 0, fmt.Errorf("%w: payload type %q, want %q", ErrTrustUnsigned, env.PayloadType, TrustPayloadType)
	}
	body, err := env.DecodeB64Payload()
	if err != nil {
		return 0, fmt.Errorf("%w: %v", ErrTrustUnsigned, err)
	}
	head, err := trustHead(body)
	if err != nil {
		return 0, fmt.Errorf("%w: its payload: %v", ErrTrustUnsigned, err)
	}
	if fleet != "" && head.Fleet != fleet {
		return 0, fmt.Errorf("the trust state is fleet %q's, not %q's", head.Fleet, fleet)
	}
	return head.Version, nil
}

// trustHead reads a payload's fleet and version, stopping once it has
// both: SignTrust writes them first, so the certificates after them are
// not read (a payload ordered otherwise is read to its end).
func trustHead(body []byte) (head struct {
	Fleet   string
	Version uint64
}, err error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return head, fmt.Errorf("not a JSON object")
	}
	var haveFleet, haveVersion bool
	for dec.More() && !(haveFleet && haveVersion) {
		t, err := dec.Token()
		if err != nil {
			return head, err
		}
		switch t {
		case "fleet":
			haveFleet, err = true, dec.Decode(&head.Fleet)
		case "version":
			haveVersion, err = true, dec.Decode(&head.Version)
		default:
			var skip json.RawMessage
			err = dec.Decode(&skip)
		}
		if err != nil {
			return head, err
		}
	}
	if !haveVersion {
		return head, fmt.Errorf("no version")
	}
	return head, nil
}

func decodeTrust(data []byte, fleet string) (*TrustState, *dsse.Envelope, error) {
	if len(data) > MaxTrustSize {
		return nil, nil, fmt.Errorf("%w: %d bytes, more than the %d a trust state may hold", ErrTrustUnsigned, len(data), MaxTrustSize)
	}
	if !IsSignedTrust(data) {
		return nil, nil, ErrTrustUnsigned
	}
	var env dsse.Envelope
	if err := json.Unmarshal(data, &env); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrTrustUnsigned, err)
	}
	if env.PayloadType != TrustPayloadType {
		return nil, nil, fmt.Errorf("%w: payload type %q, want %q", ErrTrustUnsigned, env.PayloadType, TrustPayloadType)
	}
	body, err := env.DecodeB64Payload()
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrTrustUnsigned, err)
	}
	var t TrustState
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return nil, nil, fmt.Errorf("%w: its payload: %v", ErrTrustUnsigned, err)
	}
	if fleet != "" && t.Fleet != fleet {
		return nil, nil, fmt.Errorf("the trust state is fleet %q's, not %q's", t.Fleet, fleet)
	}
	if len(t.Roots) == 0 {
		return nil, nil, errors.New("the trust state trusts no root")
	}
	for _, der := range t.Roots {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("a root in the trust state: %w", err)
		}
		t.roots = append(t.roots, c)
	}
	for _, der := range t.Lineage {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("a lineage certificate in the trust state: %w", err)
		}
		t.lineage = append(t.lineage, c)
	}
	for _, der := range t.NodeCAs {
		c, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, nil, fmt.Errorf("a node-issuing CA in the trust state: %w", err)
		}
		t.nodeCAs = append(t.nodeCAs, c)
	}
	return &t, &env, nil
}

// VerifyTrust accepts data only when one of its roots signed it and that
// root's key is one of anchors' or reached from them through the state's
// lineage (each link signed by a key already reached); held, when not nil,
// is the state the reader holds: an older version is refused, and so is
// the same version with other content. revoked (serials in hex, as the
// reader's CRL lists them) cuts lineage links: an aborted rotation's cross
// certificate is revoked, so the aborted CA's key reaches nothing. Readers
// also refuse a state AheadOf their clock.
func VerifyTrust(data []byte, fleet string, anchors []*x509.Certificate, held *TrustState, revoked map[string]bool) (*TrustState, error) {
	t, env, err := decodeTrust(data, fleet)
	if err != nil {
		return nil, err
	}
	if held != nil {
		switch {
		case t.Version < held.Version:
			return nil, fmt.Errorf("%w: version %d, this reader holds %d", ErrTrustRollback, t.Version, held.Version)
		case t.Version == held.Version && !t.sameContent(held):
			return nil, fmt.Errorf("%w: version %d differs from the version %d held", ErrTrustRollback, t.Version, held.Version)
		}
	}
	reached := Reach(anchors, t.lineage, revoked)
	var vs []dsse.Verifier
	for _, r := range t.roots {
		if reached[spki(r)] {
			vs = append(vs, rootVerifier{r})
		}
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("%w: none of its %d root(s) is trusted by this reader or vouched for by one it trusts", ErrTrustSignature, len(t.roots))
	}
	ev, err := dsse.NewEnvelopeVerifier(vs...)
	if err != nil {
		return nil, err
	}
	if _, err := ev.Verify(context.Background(), env); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTrustSignature, err)
	}
	return t, nil
}

// Reach is the set of keys (SPKI SHA-256, hex) of anchors and of every
// link in lineage, not revoked, whose signature verifies with a key
// already reached.
func Reach(anchors, lineage []*x509.Certificate, revoked map[string]bool) map[string]bool {
	reached := map[string]bool{}
	var by []*x509.Certificate
	for _, a := range anchors {
		reached[spki(a)] = true
		by = append(by, a)
	}
	for grew := true; grew; {
		grew = false
		for _, l := range lineage {
			if reached[spki(l)] || revoked[l.SerialNumber.Text(16)] {
				continue
			}
			for _, p := range by {
				if p.CheckSignature(l.SignatureAlgorithm, l.RawTBSCertificate, l.Signature) == nil {
					reached[spki(l)] = true
					by = append(by, l)
					grew = true
					break
				}
			}
		}
	}
	return reached
}

// PinAnchor is the certificate among t's roots and lineage that pin names:
// the anchor a pinned join verifies t from.
func (t *TrustState) PinAnchor(pin Pin) *x509.Certificate {
	for _, c := range append(append([]*x509.Certificate{}, t.roots...), t.lineage...) {
		if pin.Matches(c) {
			return c
		}
	}
	return nil
}

// Trusts reports whether c is one of t's roots.
func (t *TrustState) Trusts(c *x509.Certificate) bool { return containsCert(t.roots, c) }

func (t *TrustState) sameContent(o *TrustState) bool {
	a, _ := json.Marshal(t)
	b, _ := json.Marshal(o)
	return bytes.Equal(a, b)
}

func spki(c *x509.Certificate) string {
	h := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return hex.EncodeToString(h[:])
}

func containsCert(list []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range list {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// rootSigner signs a DSSE payload with a root's key (any crypto.Signer: a
// key from the store or AWS KMS) over SHA-256.
type rootSigner struct{ ca *CA }

func (s rootSigner) Sign(_ context.Context, data []byte) ([]byte, error) {
	h := sha256.Sum256(data)
	return s.ca.Key.Sign(rand.Reader, h[:], crypto.SHA256)
}

func (s rootSigner) KeyID() (string, error) { return spki(s.ca.Cert), nil }

// rootVerifier checks a signature with a root certificate's key.
type rootVerifier struct{ c *x509.Certificate }

func (v rootVerifier) Verify(_ context.Context, data, sig []byte) error {
	var alg x509.SignatureAlgorithm
	switch v.c.PublicKey.(type) {
	case *ecdsa.PublicKey:
		alg = x509.ECDSAWithSHA256
	case *rsa.PublicKey:
		alg = x509.SHA256WithRSA
	default:
		return fmt.Errorf("root key type %T cannot sign a trust state", v.c.PublicKey)
	}
	return v.c.CheckSignature(alg, data, sig)
}

func (v rootVerifier) KeyID() (string, error) { return spki(v.c), nil }

func (v rootVerifier) Public() crypto.PublicKey { return v.c.PublicKey }

// AheadOf says why t is refused by a reader whose clock says now: a
// version (the signer's clock, in seconds) or issue time more than a day
// ahead would freeze every reader at it. "" when it is not.
func (t *TrustState) AheadOf(now time.Time) string {
	ahead := now.Add(24 * time.Hour)
	if t.Version > uint64(ahead.Unix()) || t.Issued.After(ahead) {
		return fmt.Sprintf("version %d (issued %s) is ahead of this reader's clock by more than a day", t.Version, t.Issued.UTC().Format(time.RFC3339))
	}
	return ""
}

// TrustSignedBy reports whether data is a trust state c's key signed.
func TrustSignedBy(data []byte, fleet string, c *x509.Certificate) bool {
	_, env, err := decodeTrust(data, fleet)
	if err != nil {
		return false
	}
	ev, err := dsse.NewEnvelopeVerifier(rootVerifier{c})
	if err != nil {
		return false
	}
	_, err = ev.Verify(context.Background(), env)
	return err == nil
}

// TrustsKey reports whether one of t's roots has c's key: a root
// certificate re-made for the same key (a crash between a key's and its
// certificate's writes, or a re-issue) can sign nothing the root cannot.
func (t *TrustState) TrustsKey(c *x509.Certificate) bool {
	for _, r := range t.roots {
		if bytes.Equal(r.RawSubjectPublicKeyInfo, c.RawSubjectPublicKeyInfo) {
			return true
		}
	}
	return false
}
