package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"math/big"
	"sync/atomic"

	"github.com/ehsaniara/joblet/internal/config"
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
	crlNumber string

	// replaced is closed when newer credentials take over: a running
	// stream re-checks its caller then (see guard.go).
	replaced chan struct{}
	// verdicts caches each client certificate's check against these
	// credentials (see guard.go); dropped with them.
	verdicts verdictCache
	// serverTLS is what every handshake under these credentials uses,
	// made once (not one tls.Config per connection).
	serverTLS *tls.Config
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
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	revoked := map[string]bool{}
	var number *big.Int
	if s.CRL != "" {
		crl, err := pki.ParseCRL([]byte(s.CRL), cas)
		if err != nil {
			return nil, fmt.Errorf("security.crl: %w", err)
		}
		revoked = pki.RevokedSerials(crl)
		number = crl.Number
	}
	issuer := ""
	for _, ca := range cas {
		if cert.Leaf.CheckSignatureFrom(ca) == nil {
			issuer = pki.Fingerprint(ca)
		}
	}
	c := &Credentials{Cert: cert, Leaf: cert.Leaf, CAs: pool, CAPEM: s.CACert + s.CRL, CACount: len(cas), CAList: cas, Revoked: revoked,
		CRLPEM: s.CRL, crl: []byte(s.CRL), CRLNumber: number, crlNumber: crlNumberText(number), IssuerSHA256: issuer, replaced: make(chan struct{})}
	c.serverTLS = &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{c.Cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    c.CAs,
		NextProtos:   []string{"h2"},
		// After the chain is verified: refuse what the CRL lists.
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) > 0 && len(chains[0]) > 0 {
				return pki.CheckNotRevoked(chains[0][0], c.Revoked)
			}
			return nil
		},
	}
	return c, nil
}

// tlsSource serves the current credentials to every new handshake. Swapping
// them is a pointer store: established connections keep theirs, new ones
// get the new ones, nothing restarts.
type tlsSource struct{ cur atomic.Pointer[Credentials] }

func (s *tlsSource) set(c *Credentials) {
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
