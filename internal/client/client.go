// Package client dials joblet nodes from an rnx config entry and turns TLS
// failures into messages a user can act on.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/nodefacts"
	"github.com/ehsaniara/joblet/internal/pki"
)

// Conn is a connection to one node.
type Conn struct {
	Name, Address string
	Jobs          pb.JobServiceClient
	Node          pb.NodeServiceClient
	cc            *grpc.ClientConn
	tls           *tls.Config
	node          *config.Node // the entry dialed: its certificate and CRL explain refusals
	info          *pb.NodeInfo // from Hello, reused by Info
	learner       *learner     // DialLearning's
}

// Close closes the connection.
func (c *Conn) Close() error { return c.cc.Close() }

// TLSConfig builds the client side of mutual TLS for a node entry.
func TLSConfig(n *config.Node) (*tls.Config, error) {
	cert, err := tls.X509KeyPair([]byte(n.Cert), []byte(n.Key))
	if err != nil {
		return nil, fmt.Errorf("client certificate and key in the config: %w", err)
	}
	cas, err := pki.ParseCerts([]byte(n.CA))
	if err != nil {
		return nil, fmt.Errorf("ca in the config: %w", err)
	}
	pool := x509.NewCertPool()
	for _, c := range cas {
		pool.AddCert(c)
	}
	host, _, err := net.SplitHostPort(n.Address)
	if err != nil {
		return nil, fmt.Errorf("address %q: use HOST:PORT: %w", n.Address, err)
	}
	tc := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   host,
	}
	var revoked map[string]bool
	if n.CRL != "" {
		crl, err := pki.ParseCRL([]byte(n.CRL), cas)
		if err != nil {
			return nil, fmt.Errorf("crl in the config: %w", err)
		}
		revoked = pki.RevokedSerials(crl)
	}
	// The entry's own copy of the signed trust state (checked when it was
	// taken): it names the node-issuing CAs nodes may serve from.
	var doc *pki.TrustState
	if n.Trust != "" {
		if doc, err = pki.PeekTrust([]byte(n.Trust), ""); err != nil {
			return nil, fmt.Errorf("trust in the config: %w (get a current config: `rnx config refresh`)", err)
		}
	}
	if revoked != nil || doc != nil {
		// After the chain is verified: refuse a server the CRL lists, or
		// one issued through a node-issuing CA the trust state no longer
		// lists (a replaced node-issuing key).
		tc.VerifyPeerCertificate = func(_ [][]byte, chains [][]*x509.Certificate) error {
			if len(chains) == 0 || len(chains[0]) == 0 {
				return nil
			}
			if revoked != nil {
				if err := pki.CheckChainsNotRevoked(chains, revoked); err != nil {
					return err
				}
			}
			if doc != nil && !slices.ContainsFunc(chains, doc.AllowsServerChain) {
				return fmt.Errorf("the node's certificate comes from a node-issuing CA (%s) that the fleet's signed trust state (version %d) does not list: it was replaced, and its key may be in other hands. Refusing it; if the fleet just re-keyed it, `rnx config refresh`",
					pki.Fingerprint(chains[0][1]), doc.Version)
			}
			return nil
		}
	}
	return tc, nil
}

// Dial connects (lazily, as gRPC does) to the node called name.
func Dial(name string, n *config.Node) (*Conn, error) { return dial(name, n, nil) }

// DialLearning is Dial for a client that keeps its CRL current from the
// nodes it calls (learn.go): n is the config entry, whose CRL learn may
// replace; the next call then carries the new number.
func DialLearning(name string, n *config.Node, learn Learn) (*Conn, error) {
	return dial(name, n, learn)
}

func dial(name string, n *config.Node, learn Learn, extra ...grpc.DialOption) (*Conn, error) {
	tc, err := TLSConfig(n)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	return dialTLS(name, n, learn, tc, extra...)
}

func dialTLS(name string, n *config.Node, learn Learn, tc *tls.Config, extra ...grpc.DialOption) (*Conn, error) {
	c := &Conn{Name: name, Address: n.Address, tls: tc, node: n}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tc))}
	if learn != nil {
		c.learner = &learner{node: n, learn: learn}
		opts = append(opts, grpc.WithChainUnaryInterceptor(c.learnUnary), grpc.WithChainStreamInterceptor(c.learnStream))
	}
	opts = append(opts, extra...)
	cc, err := grpc.NewClient(n.Address, opts...)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	c.Jobs, c.Node, c.cc = pb.NewJobServiceClient(cc), pb.NewNodeServiceClient(cc), cc
	return c, nil
}

// Explain rewrites a failed call's error so it says why in a user's words.
// gRPC flattens TLS errors into the status message, so this matches on the
// text the standard library produces. When the message is not telling (in
// TLS 1.3 a server's rejection of the client certificate races with the
// client's first write and often surfaces as "broken pipe"), it probes the
// node once with a plain handshake to learn the real cause. The probe runs
// on this failure path only.
func (c *Conn) Explain(err error) error {
	var done *ExplainedError
	if err == nil || errors.As(err, &done) {
		return err
	}
	where := fmt.Sprintf("node %q (%s)", c.Name, c.Address)
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unauthenticated && strings.HasPrefix(msg, "refused: ") {
		// The node re-checked this client's certificate against its
		// current trust and CRL and says why it refused it: its words,
		// not a guess from TLS text (see server.RefusedPrefix).
		return &StatusError{Where: where, Status: st}
	}
	hint := c.hint(msg)
	if hint == "" && status.Code(err) == codes.Unavailable {
		if perr := probe(c.tls, c.Address); perr != nil {
			hint = c.hint(perr.Error())
			if hint != "" {
				err = fmt.Errorf("%w; probe: %v", err, perr)
			}
		}
	}
	if hint == "" {
		if st, ok := status.FromError(err); ok {
			return &StatusError{Where: where, Status: st}
		}
		return fmt.Errorf("%s: %w", where, err)
	}
	return &ExplainedError{Hint: where + ": " + hint, Err: err, transient: transient(msg)}
}

// hint is what a failure's text means: the client certificate's own
// reason first (reason.go), else the general one.
func (c *Conn) hint(msg string) string {
	if h := c.clientHint(msg); h != "" {
		return h
	}
	return hintFor(msg)
}

// transient is a failure a new connection may not meet: nothing listened
// (a node restarting).
func transient(msg string) bool { return strings.Contains(msg, "connection refused") }

func hintFor(msg string) string {
	switch {
	case strings.Contains(msg, "certificate revoked"):
		return "the server's certificate has been revoked: the node must renew it (it does so on its next refresh; or `joblet certs renew` on the node)"
	case strings.Contains(msg, "certificate signed by unknown authority"):
		return "the server's certificate is not signed by this config's CA: the node belongs to another fleet (another CA or secret prefix), or this config is out of date: `rnx config refresh` (or a new one with `rnx config init`)"
	case strings.Contains(msg, "too many intermediates for path length constraint"):
		return "this config trusts the fleet's root as it was before the node-issuing CA (a certificate that allows no CA under it): `rnx config refresh` gives it the re-issued root"
	case strings.Contains(msg, "x509: certificate is valid for"), strings.Contains(msg, "x509: certificate is not valid for any names"):
		return "the server's certificate does not name the address in this config: add the name to the node's certificate (JOBLET_ADDITIONAL_NAMES or --public-address) and re-run `joblet certs bootstrap`, or use an address it names"
	case strings.Contains(msg, "x509: certificate has expired or is not yet valid"):
		return "the server's certificate has expired (or the clocks disagree): renew it on the node with `joblet certs bootstrap`, and check both clocks"
	case strings.Contains(msg, "remote error: tls: expired certificate"):
		return "the server rejected this client certificate because it has expired: get a renewed rnx-config.yml"
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"),
		strings.Contains(msg, "remote error: tls: bad certificate"):
		return "the server rejected this client certificate: it is not signed by the CA the node trusts, has expired, or was revoked. Get the current rnx-config.yml for this fleet (`rnx config refresh`)"
	case strings.Contains(msg, "remote error: tls: certificate required"):
		// A TLS 1.3 server names the CAs it accepts; a Go client sends no
		// certificate when its own is from none of them.
		return "the server rejected this client certificate: it requires one from a CA it trusts and this config has none (no certificate, or one from another CA). Get the current rnx-config.yml for this fleet (`rnx config refresh`)"
	case strings.Contains(msg, "remote error: tls: protocol version not supported"):
		return "the server and this client share no TLS version (joblet requires TLS 1.3)"
	case strings.Contains(msg, "connection refused"):
		return "nothing is listening there: is joblet running, and is the address right?"
	}
	return ""
}

// probe handshakes with the node, sends the HTTP/2 preface and reads: a
// node that accepted the client certificate answers with its SETTINGS, one
// that refused it with a TLS alert, which probe returns.
func probe(tc *tls.Config, addr string) error {
	d := &net.Dialer{Timeout: 3 * time.Second}
	cfg := tc.Clone()
	cfg.NextProtos = []string{"h2"}
	conn, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		return err
	}
	if _, err := conn.Read(make([]byte, 1)); err != nil {
		return err
	}
	return nil
}

// StatusError is a call refused by the node for a reason the node stated
// (PermissionDenied, NotFound, ...); it keeps the gRPC status for callers.
type StatusError struct {
	Where  string
	Status *status.Status
}

func (e *StatusError) Error() string {
	return e.Where + ": " + e.Status.Code().String() + ": " + e.Status.Message()
}

// GRPCStatus lets status.Code and status.FromError see the node's answer.
func (e *StatusError) GRPCStatus() *status.Status { return e.Status }

// ExplainedError carries a user-facing hint and the original error.
type ExplainedError struct {
	Hint string
	Err  error
	// transient: another connection may succeed (Retryable).
	transient bool
}

func (e *ExplainedError) Error() string { return e.Hint + " (" + e.Err.Error() + ")" }
func (e *ExplainedError) Unwrap() error { return e.Err }

// Info fetches node info, explaining failures; after Hello it is the
// answer Hello got.
func (c *Conn) Info(ctx context.Context) (*pb.NodeInfo, error) {
	if c.info != nil {
		return c.info, nil
	}
	info, err := c.Node.GetNodeInfo(ctx, &pb.GetNodeInfoRequest{})
	return info, c.Explain(err)
}

// Hello fetches the node's info (which carries the fleet's CRL) and the
// verified chains of the certificate the node served on this connection.
func (c *Conn) Hello(ctx context.Context) (*pb.NodeInfo, [][]*x509.Certificate, error) {
	var p peer.Peer
	info, err := c.Node.GetNodeInfo(ctx, &pb.GetNodeInfoRequest{}, grpc.Peer(&p))
	if err != nil {
		return nil, nil, c.Explain(err)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 {
		return nil, nil, fmt.Errorf("node %q (%s): no verified server certificate on the connection", c.Name, c.Address)
	}
	c.info = info
	return info, ti.State.VerifiedChains, nil
}

// CheckServer refuses the connection's server certificate when the CRL
// crlPEM (verified when it was taken) lists it or a CA in its chains (the
// node-issuing CA): the handshake checked the CRL the config held then,
// and a newer one may just have been learned.
func (c *Conn) CheckServer(chains [][]*x509.Certificate, crlPEM string) error {
	crl, err := pki.ParseCRLUnverified([]byte(crlPEM))
	if err != nil {
		return nil
	}
	if err := pki.CheckChainsNotRevoked(chains, pki.RevokedSerials(crl)); err != nil {
		return &ExplainedError{Hint: fmt.Sprintf("node %q (%s): %s", c.Name, c.Address, hintFor(err.Error())), Err: err}
	}
	return nil
}

// DialNodeInfo returns a nodefacts.Asker that connects to each address directly with the
// default node credentials of the rnx config at path (an operator config).
func DialNodeInfo(path string) (nodefacts.Asker, error) {
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return nil, fmt.Errorf("asking the nodes needs an operator rnx config: %w", err)
	}
	_, base, err := cfg.Select("")
	if err != nil {
		return nil, err
	}
	return NodeInfoWith(base), nil
}

// NodeInfoWith is DialNodeInfo with the credentials of base (its address
// is not used): a caller that holds them in memory, as the rotation
// function does.
func NodeInfoWith(base *config.Node) nodefacts.Asker {
	return func(ctx context.Context, address string) (nodefacts.Facts, error) {
		n := *base
		n.Address = address
		tc, err := TLSConfig(&n)
		if err != nil {
			return nodefacts.Facts{}, err
		}
		// The CAs the node accepts client certificates from, as its
		// handshake lists them (TLS 1.3 certificate_authorities): its
		// trust, without a new RPC field.
		var mu sync.Mutex
		var accepted [][]byte
		own := tc.Certificates[0]
		tc.Certificates = nil
		tc.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			mu.Lock()
			accepted = cri.AcceptableCAs
			mu.Unlock()
			return &own, nil
		}
		conn, err := dialTLS(n.Address, &n, nil, tc)
		if err != nil {
			return nodefacts.Facts{}, err
		}
		defer conn.Close()
		info, err := conn.Info(ctx)
		if err != nil {
			return nodefacts.Facts{}, err
		}
		mu.Lock()
		f := nodefacts.Facts{NodeID: info.NodeId, IssuerSHA256: info.ServerCertIssuerSha256, ClientIssuers: map[string]nodefacts.ClientsSeen{}, AcceptedCAs: accepted}
		mu.Unlock()
		for _, ci := range info.ClientIssuers {
			f.ClientIssuers[ci.KeyId] = nodefacts.ClientsSeen{Handshakes: ci.Handshakes, LastSeen: time.Unix(ci.LastSeenUnix, 0)}
		}
		return f, nil
	}
}
