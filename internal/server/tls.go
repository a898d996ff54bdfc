package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"strconv"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/metadata"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

// Credentials are the TLS material a node serves with.
type Credentials struct {
	Cert    tls.Certificate
	Leaf    *x509.Certificate
	CAs     *x509.CertPool
	CAPEM   string // to tell whether the trust changed
	CACount int
	CAList  []*x509.Certificate
	Revoked map[string]bool // serials the CRL lists
	CRLPEM  string          // the CRL as the node holds it, handed to clients (NodeInfo.crl)
	// IssuerSHA256 is the fingerprint of the trusted CA that signed Leaf
	// (NodeInfo.server_cert_issuer_sha256), found once here: a signature
	// check on every GetNodeInfo cost the node 40% of its calls.
	IssuerSHA256 string
	crl          []byte // CRLPEM, converted once for NodeInfo
	// CRLNumber is the number of that CRL (nil without one), crlNumber
	// as it travels in metadata (crlgate.go).
	CRLNumber *big.Int
	// MinCRL is the CRL number the node's trust state names (nil: none).
	MinCRL *big.Int
	// trust is the signed trust state the node holds (its file's copy,
	// checked when it was taken), trustRaw its envelope; nil for a node
	// from before it.
	trust     *pki.TrustState
	trustRaw  string
	crlNumber string
	// serialHex is Leaf's serial as NodeInfo carries it, formatted once.
	serialHex string
	// crlHeader is crlNumber (and the trust state's version) as the
	// gate's response header, crlTrailer the CRL with both as the trailer
	// of its refusal: made once (grpc.SetHeader and SetTrailer copy them,
	// never change them).
	crlHeader, crlTrailer metadata.MD

	caCertPEM string // security.caCert as loaded (CAPEM without the CRL)

	// persons is the identity policy the node holds (nil: none, or one
	// that no trusted root signed), personsRaw its envelope: a person's
	// certificate is accepted only for a role it gives them (guard.go).
	persons    *idpolicy.Policy
	personsRaw string

	// replaced is closed when newer credentials take over: a running
	// stream re-checks its caller then (see guard.go).
	replaced chan struct{}
	// verdicts caches each client certificate's check against these
	// credentials (see guard.go); dropped with them.
	verdicts verdictCache
	// serverTLS is what every handshake under these credentials uses,
	// made once (not one tls.Config per connection).
	serverTLS *tls.Config
	// issuers is the serving node's count of client issuers, set when
	// the credentials go into service (tlsSource.set).
	issuers *clientIssuers
}

// CredentialsFromConfig parses the security section of a server config.
func CredentialsFromConfig(s config.Security) (*Credentials, error) {
	cert, err := tls.X509KeyPair([]byte(s.ServerCert), []byte(s.ServerKey))
	if err != nil {
		return nil, fmt.Errorf("security.serverCert/serverKey: %w", err)
	}
	cas, err := pki.ParseCerts([]byte(s.CACert))
	if err != nil {
		return nil, fmt.Errorf("security.caCert: %w", err)
	}
	c, err := newCredentials(cert, cas, s.CACert, s.CRL)
	if err != nil {
		return nil, err
	}
	// The trust state names the fleet's newest CRL: a node holding an
	// older one (a node that joined after the CRL secret was deleted)
	// refuses calls until it has it (guard.go). Fleet "" : the node's own
	// file, whichever prefix.
	if t, err := pki.PeekTrust([]byte(s.TrustState), ""); err == nil {
		c.holdTrust(t, s.TrustState)
	}
	if s.IdentityPolicy != "" {
		// Not one older than the trust state names: the root replaced it.
		if pol, err := idpolicy.Open([]byte(s.IdentityPolicy), cas); err == nil && (c.trust == nil || pol.Version >= c.trust.MinIdentityPolicy) {
			c.persons, c.personsRaw = pol, s.IdentityPolicy
		}
	}
	return c, nil
}

// holdTrust makes t (raw, its envelope) the trust state c holds, and tells
// its version with the CRL number (crlgate.go), so a client holding a newer
// state hands it over.
func (c *Credentials) holdTrust(t *pki.TrustState, raw string) {
	c.trust, c.trustRaw, c.MinCRL = t, raw, t.MinCRL
	v := strconv.FormatUint(t.Version, 10)
	c.crlHeader = metadata.Pairs(pb.CRLNumberKey, c.crlNumber, pb.TrustVersionKey, v)
	c.crlTrailer = metadata.Pairs(pb.CRLTrailerKey, c.CRLPEM, pb.CRLNumberKey, c.crlNumber, pb.TrustVersionKey, v)
}

// CRLGap says, when the node holds an older CRL than its trust state
// names, that it refuses calls until it gets that CRL; "" when it holds it.
func (c *Credentials) CRLGap() string {
	if c.MinCRL == nil || (c.CRLNumber != nil && c.CRLNumber.Cmp(c.MinCRL) >= 0) {
		return ""
	}
	return "this node holds CRL number " + c.crlNumber + " but the fleet's signed trust state names number " + pb.FormatCRLNumber(c.MinCRL) +
		": it serves no call until it has that CRL (its next refresh from the store, `joblet certs revoke --nodes` pushing it, or a client carrying it); if the store lost its CRL, `joblet certs revoke` of any serial writes it again"
}

// withCRL is c with another CRL (verified by the caller against c.CAList):
// the same certificate and trust, a new gate (offer.go).
func (c *Credentials) withCRL(crlPEM string) (*Credentials, error) {
	n, err := newCredentials(c.Cert, c.CAList, c.caCertPEM, crlPEM)
	if n != nil && c.trust != nil {
		n.holdTrust(c.trust, c.trustRaw)
	}
	if n != nil {
		n.persons, n.personsRaw = c.persons, c.personsRaw
	}
	return n, err
}

// newCredentials builds credentials from parsed material; crlPEM ("" for
// none) must verify against cas.
func newCredentials(cert tls.Certificate, cas []*x509.Certificate, caPEM, crlPEM string) (*Credentials, error) {
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	revoked := map[string]bool{}
	var number *big.Int
	if crlPEM != "" {
		crl, err := pki.ParseCRL([]byte(crlPEM), cas)
		if err != nil {
			return nil, fmt.Errorf("security.crl: %w", err)
		}
		revoked = pki.RevokedSerials(crl)
		number = crl.Number
	}
	c := &Credentials{Cert: cert, Leaf: cert.Leaf, CAs: pool, CAPEM: caPEM + crlPEM, CACount: len(cas), CAList: cas, Revoked: revoked,
		CRLPEM: crlPEM, crl: []byte(crlPEM), CRLNumber: number, crlNumber: pb.FormatCRLNumber(number), replaced: make(chan struct{}), caCertPEM: caPEM}
	c.crlHeader = metadata.Pairs(pb.CRLNumberKey, c.crlNumber)
	c.crlTrailer = metadata.Pairs(pb.CRLTrailerKey, crlPEM, pb.CRLNumberKey, c.crlNumber)
	if c.Leaf != nil {
		c.serialHex = pki.SerialHex(c.Leaf.SerialNumber)
	}
	c.IssuerSHA256 = c.anchorSHA256() // once, not per call: a signature check
	c.serverTLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.CAs,
		NextProtos:   []string{"h2"},
		// After the chain is verified: refuse what the CRL lists, in
		// any CA of the chain too; count the client's issuing CA.
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) > 0 && len(chains[0]) > 0 {
				if err := pki.CheckChainsNotRevoked(chains, c.Revoked); err != nil {
					return err
				}
				if c.issuers != nil {
					c.issuers.note(chains[0][0].AuthorityKeyId, time.Now())
				}
			}
			return nil
		},
	}
	return c, nil
}

// anchorSHA256 is the fingerprint of the trusted CA the served certificate
// chains to: the root that signed it, or the root that signed the
// node-issuing CA that signed it; "" when none of the trusted CAs does.
//
// The walk stops at the first trusted CA: during a CA rotation the chain
// goes on past the new root to its cross certificate from the old one
// (certs/cross.go), and the node's certificate is the new root's.
func (c *Credentials) anchorSHA256() string {
	trustedSigner := func(cert *x509.Certificate) string {
		for _, ca := range c.CAList {
			if cert.CheckSignatureFrom(ca) == nil {
				return pki.Fingerprint(ca)
			}
		}
		return ""
	}
	signer := c.Leaf
	for _, der := range c.Cert.Certificate[1:] {
		if fp := trustedSigner(signer); fp != "" {
			return fp
		}
		if inter, err := x509.ParseCertificate(der); err == nil && signer.CheckSignatureFrom(inter) == nil {
			signer = inter
		}
	}
	return trustedSigner(signer)
}

// tlsSource serves the current credentials to every new handshake. Swapping
// them is a pointer store: established connections keep theirs, new ones
// get the new ones, nothing restarts.
type tlsSource struct {
	cur atomic.Pointer[Credentials]
	// issuers counts the verified client certificates by issuing CA.
	issuers clientIssuers
}

func (s *tlsSource) set(c *Credentials) {
	c.issuers = &s.issuers
	if old := s.cur.Swap(c); old != nil && old != c {
		close(old.replaced)
	}
}

func (s *tlsSource) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// The current credentials' config, made when they were loaded.
		// It sets no ticket keys, so session tickets keep this outer
		// config's keys across reloads, as before.
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.cur.Load().serverTLS, nil
		},
	}
}
