package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func newCA(t *testing.T, now time.Time) *pki.CA {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCA(key, now, 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}

// entry is a config entry for a client of role reader issued by ca at
// issued for lifetime, trusting trust.
func entry(t *testing.T, ca, trust *pki.CA, issued time.Time, lifetime time.Duration, address string) *config.Node {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := ca.IssueClient(key.Public(), pki.Reader, issued, lifetime)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	return &config.Node{Address: address, Cert: string(pki.EncodeCert(is.Cert)), Key: string(keyPEM), CA: string(pki.EncodeCert(trust.Cert))}
}

// A node as joblet's TLS sets it up (internal/server/tls.go): client
// certificates from ca, the CRL's serials refused after the chain.
func node(t *testing.T, ca *pki.CA, revoked map[string]bool) string {
	t.Helper()
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	is, err := ca.IssueServer(key.Public(), pki.SANs{IPs: []net.IP{net.ParseIP("127.0.0.1")}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	tc := &tls.Config{MinVersion: tls.VersionTLS13, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		Certificates: []tls.Certificate{{Certificate: [][]byte{is.Cert.Raw}, PrivateKey: key, Leaf: is.Cert}},
		VerifyPeerCertificate: func(_ [][]byte, chains [][]*x509.Certificate) error {
			return pki.CheckChainsNotRevoked(chains, revoked)
		}}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)))
	pb.RegisterNodeServiceServer(s, pb.UnimplementedNodeServiceServer{})
	go s.Serve(l)
	t.Cleanup(s.Stop)
	return l.Addr().String()
}

func callErr(t *testing.T, n *config.Node) string {
	t.Helper()
	c, err := Dial("n", n)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = c.Info(ctx)
	if err == nil {
		t.Fatal("the node accepted the call")
	}
	return err.Error()
}

// Each refusal of the client certificate names its real reason and fix.
func TestRefusedClientCertificateReasons(t *testing.T) {
	now := time.Now()
	ca, other := newCA(t, now.Add(-3*time.Hour)), newCA(t, now.Add(-3*time.Hour))
	revoked := entry(t, ca, ca, now, time.Hour, "")
	leaf, _, _ := pki.ParseChain([]byte(revoked.Cert))
	addr := node(t, ca, map[string]bool{leaf.SerialNumber.Text(16): true})

	expired := entry(t, ca, ca, now.Add(-2*time.Hour), time.Hour, addr)
	if msg := callErr(t, expired); !strings.Contains(msg, "role reader") || !strings.Contains(msg, "expired at") || !strings.Contains(msg, "joblet certs reissue --role reader") {
		t.Errorf("expired: %s", msg)
	}
	foreign := entry(t, other, ca, now, time.Hour, addr)
	if msg := callErr(t, foreign); !strings.Contains(msg, "the node does not trust the CA that issued it") {
		t.Errorf("another CA's: %s", msg)
	}
	revoked.Address = addr
	if msg := callErr(t, revoked); !strings.Contains(msg, "rejected this client certificate (role reader, serial "+pki.SerialHex(leaf.SerialNumber)+") as revoked") || !strings.Contains(msg, "joblet certs reissue --role reader") {
		t.Errorf("revoked by the node's CRL: %s", msg)
	}
	crl, err := ca.NewCRL([]x509.RevocationListEntry{{SerialNumber: leaf.SerialNumber, RevocationTime: now, ReasonCode: 1}}, big.NewInt(2), now)
	if err != nil {
		t.Fatal(err)
	}
	revoked.CRL = string(crl)
	if msg := callErr(t, revoked); !strings.Contains(msg, "was revoked on") || !strings.Contains(msg, "(keyCompromise)") {
		t.Errorf("revoked, the config's CRL listing it: %s", msg)
	}
	if err := DeadCert(entry(t, ca, ca, now, time.Hour, addr), now); err != nil {
		t.Errorf("a good certificate: %v", err)
	}
}
