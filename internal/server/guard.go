package server

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/pki"
)

// The handshake checks a client certificate once, against the credentials
// of that moment. A connection can outlive them: the certificate may be
// revoked, its CA dropped from the trust, or it may expire while the client
// keeps calling. The guard re-checks the caller on every RPC against the
// node's current credentials, and a running stream whenever they change or
// the certificate expires.

// guard holds what the re-check needs: the node's current credentials.
type guard struct {
	tls *tlsSource
	now func() time.Time
}

// verdict is one client certificate's check against one set of
// credentials. It stays true until the earliest NotAfter of the chain:
// time only makes a certificate older.
type verdict struct {
	err   error
	until time.Time
}

// verdictCache maps a client certificate (its DER) to its verdict. It lives
// in Credentials, so a reload starts it afresh; it is bounded, so a fleet
// with many certificates costs memory, not correctness.
type verdictCache struct {
	mu sync.Mutex
	m  map[string]verdict
}

const maxVerdicts = 4096

func (c *verdictCache) get(der []byte, now time.Time) (verdict, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[string(der)]
	if !ok || !now.Before(v.until) {
		return verdict{}, false
	}
	return v, true
}

func (c *verdictCache) put(der []byte, v verdict) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxVerdicts {
		c.m = map[string]verdict{}
	}
	c.m[string(der)] = v
}

// callerChain is the verified chain the handshake recorded: the leaf, then
// its CAs. The handshake refuses connections without one, so missing means
// a transport joblet does not serve.
func callerChain(ctx context.Context) ([]*x509.Certificate, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return nil, errors.New("no peer information")
	}
	info, ok := tlsInfo(p.AuthInfo)
	if !ok || len(info.State.VerifiedChains) == 0 || len(info.State.VerifiedChains[0]) == 0 {
		return nil, errors.New("no verified client certificate")
	}
	return info.State.VerifiedChains[0], nil
}

// check says why the caller's certificate is no longer acceptable to creds
// at now, or nil. The messages name the certificate and what to do.
func check(chain []*x509.Certificate, creds *Credentials, now time.Time) error {
	leaf := chain[0]
	if v, ok := creds.verdicts.get(leaf.Raw, now); ok {
		return v.err
	}
	until := leaf.NotAfter
	for _, c := range chain[1:] {
		if c.NotAfter.Before(until) {
			until = c.NotAfter
		}
	}
	if creds.persons != nil && creds.persons.Expires.Before(until) {
		until = creds.persons.Expires // a person is refused from then on
	}
	err := checkNow(leaf, chain[1:], creds, now)
	creds.verdicts.put(leaf.Raw, verdict{err: err, until: until})
	return err
}

// checkNow verifies leaf again with the certificates it came with as
// intermediates: a client of a rotation's new CA presents the cross
// certificate that makes it verify against a node that trusts only the old
// CA (see certs/cross.go).
func checkNow(leaf *x509.Certificate, with []*x509.Certificate, creds *Credentials, now time.Time) error {
	who := fmt.Sprintf("client certificate %q (serial %s)", leaf.Subject.CommonName, pki.SerialHex(leaf.SerialNumber))
	if !now.Before(leaf.NotAfter) {
		return fmt.Errorf("%s expired at %s: get a renewed rnx-config.yml (`rnx config refresh`)", who, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	if creds.Revoked[leaf.SerialNumber.Text(16)] {
		return fmt.Errorf("%s has been revoked: this node's current CRL lists it; have the role re-issued (`joblet certs reissue --role ROLE`), then `rnx config refresh`", who)
	}
	inter := x509.NewCertPool()
	for _, c := range with {
		inter.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{Roots: creds.CAs, Intermediates: inter, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	if err != nil {
		// Not the x509 text: "signed by unknown authority" would read, to
		// rnx, as a verdict on the server's certificate.
		return fmt.Errorf("%s, issued by %q, no longer chains to a CA this node trusts: the fleet's trust changed; get the current rnx-config.yml (`rnx config refresh`)",
			who, leaf.Issuer.CommonName)
	}
	if err := pki.CheckChainsNotRevoked(chains, creds.Revoked); err != nil {
		return fmt.Errorf("%s chains through a revoked CA certificate (%v): get the current rnx-config.yml (`rnx config refresh`)", who, err)
	}
	return creds.checkPerson(leaf, chains, now)
}

// checkPerson holds a client certificate to the identity policy the node
// holds: a person's (`rnx login`) only for a role the policy gives them,
// whatever the issuer signed; a shared role certificate unless the policy
// refuses shared ones for its role. Without a policy (or with an expired
// one) no person is accepted. A certificate the user-issuing CA signed
// must name a person: that CA's key is the issuer's, and a certificate
// from it naming nobody would be a shared role certificate the policy
// never holds to a person (admin for anyone the issuer likes).
func (c *Credentials) checkPerson(leaf *x509.Certificate, chains [][]*x509.Certificate, now time.Time) error {
	person, isPerson, err := pki.PersonOf(leaf)
	if err != nil {
		return err
	}
	if !isPerson {
		for _, ch := range chains {
			if len(ch) > 1 && pki.IsUserCA(ch[1]) {
				return fmt.Errorf("client certificate %q (serial %s) comes from the user-issuing CA but names no person: the issuer signs persons only; refused", leaf.Subject.CommonName, pki.SerialHex(leaf.SerialNumber))
			}
		}
	}
	pol := c.persons
	switch {
	case pol == nil && !isPerson:
		return nil
	case pol == nil:
		return fmt.Errorf("the certificate of %s is refused: this node holds no identity policy signed by the fleet's root (an operator signs one: `joblet certs identity-policy sign`)", person.ARN)
	case isPerson && !now.Before(pol.Expires):
		return fmt.Errorf("the certificate of %s is refused: this node's identity policy (version %d) expired on %s", person.ARN, pol.Version, pol.Expires.UTC().Format(time.RFC3339))
	}
	role, err := pki.RoleOf(leaf)
	if err != nil {
		return err
	}
	return pol.Allows(person.ARN, role)
}

// RefusedPrefix starts the message of a call the re-check refused; rnx
// shows such a message as the node's own verdict.
const RefusedPrefix = "refused: "

// refused is the status a re-check failure ends a call with.
func refused(err error) error {
	return status.Error(codes.Unauthenticated, RefusedPrefix+err.Error())
}

func (g *guard) unary(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	chain, err := callerChain(ctx)
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	creds := g.tls.cur.Load()
	if err := check(chain, creds, g.now()); err != nil {
		return nil, refused(err)
	}
	if err := crlGapRefusal(creds, info.FullMethod); err != nil {
		return nil, err
	}
	return h(ctx, req)
}

// crlGapRefusal refuses every call but a CRL offer while the node holds an
// older CRL than its trust state names: it cannot tell a revoked caller
// from another.
func crlGapRefusal(creds *Credentials, method string) error {
	if creds.MinCRL == nil || method == pb.NodeService_OfferCRL_FullMethodName {
		return nil
	}
	if gap := creds.CRLGap(); gap != "" {
		return status.Error(codes.Unavailable, gap)
	}
	return nil
}

// stream checks the caller when the stream opens, then again each time the
// credentials are replaced and when the certificate expires, ending the
// stream with Unauthenticated as soon as it no longer passes: a follow
// that runs for hours does not outlive a revocation.
func (g *guard) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	chain, err := callerChain(ss.Context())
	if err != nil {
		return status.Error(codes.Unauthenticated, err.Error())
	}
	creds := g.tls.cur.Load()
	if err := check(chain, creds, g.now()); err != nil {
		return refused(err)
	}
	if err := crlGapRefusal(creds, info.FullMethod); err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ss.Context())
	defer cancel(nil)
	go g.watch(ctx, cancel, chain, creds)
	err = h(srv, roleStream{ServerStream: ss, ctx: ctx})
	var rf *refusal
	if errors.As(context.Cause(ctx), &rf) {
		return refused(rf.err)
	}
	return err
}

// refusal is the cause a watched stream is cancelled with.
type refusal struct{ err error }

func (r *refusal) Error() string { return r.err.Error() }

func (g *guard) watch(ctx context.Context, cancel context.CancelCauseFunc, chain []*x509.Certificate, creds *Credentials) {
	expiry := time.NewTimer(time.Until(chain[0].NotAfter))
	defer expiry.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-creds.replaced:
			creds = g.tls.cur.Load()
		case <-expiry.C:
		}
		if err := check(chain, creds, g.now()); err != nil {
			cancel(&refusal{err})
			return
		}
	}
}
