package client

import (
	"context"
	"crypto/x509"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// Learn is given a CRL a node handed out, newer than the one the config
// entry holds, with the verified chains of the certificate that node
// served on the connection. It keeps what it trusts of the CRL (in the
// entry, so the next call carries the new number) and returns an error to
// refuse the node (its certificate, or a CA of its chain, is listed).
type Learn func(crl []byte, server [][]*x509.Certificate) error

// learner keeps a connection's CRL current by the metadata protocol of
// internal/server/crlgate.go: every call carries the number of the CRL the
// entry holds; a node with a newer one refuses the call before running it
// and hands its CRL over, which learn takes before the call is made again.
// A node that does not answer with its number (one from before the
// protocol) is asked with GetNodeInfo once, after the first call, as rnx
// used to ask every node before every command.
type learner struct {
	node  *config.Node
	learn Learn

	mu               sync.Mutex
	heldPEM, heldNum string
	askedOld         bool
	// speaks is set once a node answered with its number: from then on a
	// call answered without it means the node holds the number sent
	// (the node tells each connection once, internal/server/crlgate.go).
	speaks bool
	// carried names the CRL and trust state last handed to this node
	// because it answered with older ones (carry), so they are offered
	// once.
	carried string
	// trustRaw is the entry's trust state as last read, trustVer its
	// version (0: none, or one that does not parse).
	trustRaw    string
	trustVer    uint64
	trustPeeked bool
}

// held is the number of the CRL the entry holds now, as it travels.
func (l *learner) held() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.heldNum == "" || l.heldPEM != l.node.CRL {
		l.heldPEM, l.heldNum = l.node.CRL, pb.FormatCRLNumber(nil)
		if n, err := pki.CRLNumber([]byte(l.node.CRL)); l.node.CRL != "" && err == nil {
			l.heldNum = pb.FormatCRLNumber(n)
		}
	}
	return l.heldNum
}

// heldTrust is the version of the signed trust state the entry holds (0
// for none) and the state. The entry's own copy was verified when it was
// taken (rnx config refresh); the node it is carried to verifies it again
// from the roots it holds.
func (l *learner) heldTrust() (uint64, string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.trustPeeked || l.trustRaw != l.node.Trust {
		l.trustRaw, l.trustVer, l.trustPeeked = l.node.Trust, 0, true
		if t, err := pki.PeekTrust([]byte(l.trustRaw), ""); l.trustRaw != "" && err == nil {
			l.trustVer = t.Version
		}
	}
	return l.trustVer, l.trustRaw
}

// newerCRL is the CRL a node refused a call with for being newer, or nil.
func newerCRL(err error, trailer metadata.MD) []byte {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.FailedPrecondition || !strings.HasPrefix(st.Message(), pb.CRLNewerPrefix) {
		return nil
	}
	if v := trailer.Get(pb.CRLTrailerKey); len(v) > 0 && v[0] != "" {
		return []byte(v[0])
	}
	return nil
}

func serverChains(p *peer.Peer) [][]*x509.Certificate {
	if p == nil {
		return nil
	}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok {
		return ti.State.VerifiedChains
	}
	return nil
}

// oldNode asks a node that does not speak the protocol for its CRL, once;
// after carry, which notes a node that does. (Two calls racing on a new
// connection may have the node's number on the one answered second: the
// first then asks a node that speaks, which costs a GetNodeInfo and
// learns the same CRL.)
func (c *Conn) oldNode(ctx context.Context) error {
	c.learner.mu.Lock()
	asked := c.learner.askedOld || c.learner.speaks
	c.learner.askedOld = true
	c.learner.mu.Unlock()
	if asked {
		return nil
	}
	info, chains, err := c.Hello(ctx)
	if err != nil || len(info.Crl) == 0 {
		return err
	}
	return c.learner.learn(info.Crl, chains)
}

func (c *Conn) learnUnary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	c.learner.mu.Lock()
	old := c.learner.askedOld && !c.learner.speaks
	c.learner.mu.Unlock()
	if old && method == pb.NodeService_GetNodeInfo_FullMethodName {
		// A node from before the protocol: its Hello (oldNode) answers
		// with its CRL. A node that speaks it is sent the number on every
		// call, GetNodeInfo included.
		return invoker(ctx, method, req, reply, cc, opts...)
	}
	var header, trailer metadata.MD
	var p peer.Peer
	err := invoker(metadata.AppendToOutgoingContext(ctx, pb.CRLNumberKey, c.learner.held()), method, req, reply, cc,
		append(opts, grpc.Header(&header), grpc.Trailer(&trailer), grpc.Peer(&p))...)
	if crl := newerCRL(err, trailer); crl != nil {
		if err := c.learner.learn(crl, serverChains(&p)); err != nil {
			return err
		}
		// Without the number: whatever learn kept, the node runs it now.
		err := invoker(ctx, method, req, reply, cc, opts...)
		c.carry(ctx, method, trailer) // a trust state older than the entry's
		return err
	}
	c.carry(ctx, method, header)
	if err == nil {
		return c.oldNode(ctx)
	}
	return err
}

// carry hands the node what the entry holds that is newer than the node's,
// as md says (the call's header, or the trailer of a newer-CRL refusal):
// the CRL when the node's number is older, the signed trust state when its
// version is (with the CRL when that is older too: the state may be what
// verifies it, a rotation's finish). Once per what is held and
// connection, best effort, never failing the caller's call. The node
// verifies both as it would from the store (internal/server/offer.go,
// offertrust.go), and refuses what the CRL revokes, or what the state no
// longer trusts, from its next call on. A node too busy to check them
// (RESOURCE_EXHAUSTED) or out of reach is offered them again on a later
// call.
func (c *Conn) carry(ctx context.Context, method string, md metadata.MD) {
	v := md.Get(pb.CRLNumberKey)
	if len(v) == 0 {
		return
	}
	l := c.learner
	l.mu.Lock()
	l.speaks = true
	l.mu.Unlock()
	if method == pb.NodeService_OfferCRL_FullMethodName {
		return
	}
	heldNum := l.held()
	trustVer, trust := l.heldTrust()
	crlOlder := false
	if v[0] != heldNum {
		nodeNum, ok := pb.ParseCRLNumber(v[0])
		held, _ := pb.ParseCRLNumber(heldNum)
		crlOlder = ok && held != nil && (nodeNum == nil || nodeNum.Cmp(held) < 0)
	}
	// A node without a signed state tells no version: it takes one from
	// the store, not from a caller.
	trustOlder := false
	if tv := md.Get(pb.TrustVersionKey); len(tv) > 0 && trustVer > 0 {
		n, err := strconv.ParseUint(tv[0], 10, 64)
		trustOlder = err == nil && n < trustVer
	}
	if !crlOlder && !trustOlder {
		return
	}
	key := heldNum + "/" + strconv.FormatUint(trustVer, 10)
	l.mu.Lock()
	if l.carried == key {
		l.mu.Unlock()
		return
	}
	l.carried = key
	crl := l.heldPEM
	l.mu.Unlock()
	req := &pb.OfferCRLRequest{}
	if crlOlder {
		req.Crl = []byte(crl)
	}
	if trustOlder {
		req.TrustState = []byte(trust)
	}
	octx, cancel := context.WithTimeout(context.WithoutCancel(ctx), carryTimeout)
	defer cancel()
	_, err := c.Node.OfferCRL(octx, req)
	if code := status.Code(err); crlOlder && trustOlder && (code == codes.InvalidArgument || code == codes.FailedPrecondition) {
		// The node refused the state (and so never looked at the CRL):
		// the CRL may still verify under the roots it holds.
		_, err = c.Node.OfferCRL(octx, &pb.OfferCRLRequest{Crl: req.Crl})
	}
	if code := status.Code(err); code == codes.ResourceExhausted || code == codes.Unavailable || code == codes.DeadlineExceeded {
		l.mu.Lock()
		if l.carried == key {
			l.carried = ""
		}
		l.mu.Unlock()
	}
}

// carryTimeout bounds what carrying a CRL adds to a user's command.
const carryTimeout = 5 * time.Second

func (c *Conn) learnStream(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	s, err := streamer(metadata.AppendToOutgoingContext(ctx, pb.CRLNumberKey, c.learner.held()), desc, cc, method, opts...)
	if err != nil {
		return nil, err
	}
	return &learningStream{ClientStream: s, c: c, ctx: ctx,
		again: func() (grpc.ClientStream, error) { return streamer(ctx, desc, cc, method, opts...) }}, nil
}

// learningStream settles the protocol on its first receive: a refusal for
// a newer CRL opens the stream again (without the number) and sends it
// what was sent on the refused one. That suits streams whose client sends
// before it receives (every stream rnx opens is a server stream: one
// request, then the answers); mu keeps a sender and a receiver apart.
type learningStream struct {
	grpc.ClientStream
	c     *Conn
	ctx   context.Context
	again func() (grpc.ClientStream, error)

	mu      sync.Mutex
	sent    []any
	closed  bool
	settled bool
}

func (s *learningStream) SendMsg(m any) error {
	s.mu.Lock()
	if !s.settled {
		s.sent = append(s.sent, m)
	}
	cs := s.ClientStream
	s.mu.Unlock()
	return cs.SendMsg(m)
}

func (s *learningStream) CloseSend() error {
	s.mu.Lock()
	s.closed = true
	cs := s.ClientStream
	s.mu.Unlock()
	return cs.CloseSend()
}

func (s *learningStream) RecvMsg(m any) error {
	s.mu.Lock()
	cs, settled := s.ClientStream, s.settled
	s.mu.Unlock()
	err := cs.RecvMsg(m)
	if settled {
		return err
	}
	crl := newerCRL(err, cs.Trailer())
	if crl == nil {
		s.mu.Lock()
		s.settled, s.sent = true, nil
		s.mu.Unlock()
		if err == nil {
			if h, herr := cs.Header(); herr == nil {
				s.c.carry(s.ctx, "", h)
				if lerr := s.c.oldNode(s.ctx); lerr != nil {
					return lerr
				}
			}
		}
		return err
	}
	p, _ := peer.FromContext(cs.Context())
	if err := s.c.learner.learn(crl, serverChains(p)); err != nil {
		return err
	}
	ns, err := s.again()
	if err != nil {
		return err
	}
	s.c.carry(s.ctx, "", cs.Trailer()) // a trust state older than the entry's
	s.mu.Lock()
	sent, closed := s.sent, s.closed
	s.ClientStream, s.sent, s.settled = ns, nil, true
	s.mu.Unlock()
	for _, m := range sent {
		if err := ns.SendMsg(m); err != nil {
			return err
		}
	}
	if closed {
		if err := ns.CloseSend(); err != nil {
			return err
		}
	}
	return ns.RecvMsg(m)
}
