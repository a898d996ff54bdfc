package server

import (
	"sort"
	"sync"
	"time"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/prometheus/client_golang/prometheus"
)

// clientIssuers counts the client certificates a node verified, by the key
// id of the CA that issued each: during a CA rotation it tells the
// operator whether clients still present certificates of the outgoing CA
// (NodeInfo.client_issuers, and a metric). A handful of keys at most: the
// CAs a fleet trusts.
type clientIssuers struct {
	mu   sync.Mutex
	seen map[string]*pb.ClientIssuer
	// listed is list's answer until the next note: every GetNodeInfo
	// asks, handshakes are far fewer than calls. Never changed once made
	// (callers marshal it concurrently); note makes a new one.
	listed []*pb.ClientIssuer
}

// note records one verified client certificate issued by the CA whose
// key id is authorityKeyID.
func (c *clientIssuers) note(authorityKeyID []byte, now time.Time) {
	id := pki.KeyIDHex(authorityKeyID)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.seen == nil {
		c.seen = map[string]*pb.ClientIssuer{}
	}
	e := c.seen[id]
	if e == nil {
		e = &pb.ClientIssuer{KeyId: id}
		c.seen[id] = e
	}
	e.Handshakes++
	e.LastSeenUnix = now.Unix()
	c.listed = nil
}

// list is what was seen, by key id; the caller must not change it.
func (c *clientIssuers) list() []*pb.ClientIssuer {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.listed != nil {
		return c.listed
	}
	out := make([]*pb.ClientIssuer, 0, len(c.seen))
	for _, e := range c.seen {
		out = append(out, &pb.ClientIssuer{KeyId: e.KeyId, Handshakes: e.Handshakes, LastSeenUnix: e.LastSeenUnix})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].KeyId < out[j].KeyId })
	c.listed = out
	return out
}

var clientIssuerDesc = prometheus.NewDesc("joblet_client_certificates_verified_total",
	"Client certificates verified in TLS handshakes, by the key id of the CA that issued them.", []string{"issuer_key_id"}, nil)

func (c *clientIssuers) Describe(ch chan<- *prometheus.Desc) { ch <- clientIssuerDesc }
func (c *clientIssuers) Collect(ch chan<- prometheus.Metric) {
	for _, e := range c.list() {
		ch <- prometheus.MustNewConstMetric(clientIssuerDesc, prometheus.CounterValue, float64(e.Handshakes), e.KeyId)
	}
}
