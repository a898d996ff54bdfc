// Package client dials joblet nodes from an rnx config entry and turns TLS
// failures into messages a user can act on.
package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// Conn is a connection to one node.
type Conn struct {
	Name, Address string
	Jobs          pb.JobServiceClient
	Node          pb.NodeServiceClient
	cc            *grpc.ClientConn
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
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cert},
		RootCAs:      pool,
		ServerName:   host,
	}, nil
}

// Dial connects (lazily, as gRPC does) to the node called name.
func Dial(name string, n *config.Node) (*Conn, error) {
	tc, err := TLSConfig(n)
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	cc, err := grpc.NewClient(n.Address, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return nil, fmt.Errorf("node %q: %w", name, err)
	}
	return &Conn{Name: name, Address: n.Address, Jobs: pb.NewJobServiceClient(cc), Node: pb.NewNodeServiceClient(cc), cc: cc}, nil
}

// Explain rewrites a failed call's error so it says why in a user's words.
// gRPC flattens TLS errors into the status message, so this matches on the
// text the standard library produces.
func (c *Conn) Explain(err error) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if st, ok := status.FromError(err); ok {
		msg = st.Message()
	}
	where := fmt.Sprintf("node %q (%s)", c.Name, c.Address)
	var hint string
	switch {
	case strings.Contains(msg, "certificate signed by unknown authority"):
		hint = "the server's certificate is not signed by this config's CA: the node belongs to another fleet (another CA or secret prefix), or this config is out of date. Get the current rnx-config.yml from a node of that fleet"
	case strings.Contains(msg, "x509: certificate is valid for"), strings.Contains(msg, "x509: certificate is not valid for any names"):
		hint = "the server's certificate does not name the address in this config: add the name to the node's certificate (JOBLET_ADDITIONAL_NAMES or --public-address) and re-run `joblet certs bootstrap`, or use an address it names"
	case strings.Contains(msg, "x509: certificate has expired or is not yet valid"):
		hint = "the server's certificate has expired (or the clocks disagree): renew it on the node with `joblet certs bootstrap`, and check both clocks"
	case strings.Contains(msg, "remote error: tls: unknown certificate authority"),
		strings.Contains(msg, "remote error: tls: bad certificate"):
		hint = "the server rejected this client certificate: it is not signed by the CA the node trusts. Get the current rnx-config.yml for this fleet"
	case strings.Contains(msg, "remote error: tls: expired certificate"):
		hint = "the server rejected this client certificate because it has expired: get a renewed rnx-config.yml"
	case strings.Contains(msg, "remote error: tls: certificate required"):
		hint = "the server requires a client certificate and none was sent"
	case strings.Contains(msg, "connection refused"):
		hint = "nothing is listening there: is joblet running, and is the address right?"
	case strings.Contains(msg, "remote error: tls: protocol version not supported"):
		hint = "the server and this client share no TLS version (joblet requires TLS 1.3)"
	}
	if st, ok := status.FromError(err); ok && hint == "" {
		return fmt.Errorf("%s: %s: %s", where, st.Code(), st.Message())
	}
	if hint == "" {
		return fmt.Errorf("%s: %w", where, err)
	}
	return &ExplainedError{Hint: fmt.Sprintf("%s: %s", where, hint), Err: err}
}

// ExplainedError carries a user-facing hint and the original error.
type ExplainedError struct {
	Hint string
	Err  error
}

func (e *ExplainedError) Error() string { return e.Hint + " (" + e.Err.Error() + ")" }
func (e *ExplainedError) Unwrap() error { return e.Err }

// Info fetches node info, explaining failures.
func (c *Conn) Info(ctx context.Context) (*pb.NodeInfo, error) {
	info, err := c.Node.GetNodeInfo(ctx, &pb.GetNodeInfoRequest{})
	return info, c.Explain(err)
}
