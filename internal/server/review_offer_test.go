package server_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/pki"
)

// An attacker review: the offer gate keys a caller by its certificate and
// source address (/32, /64), and all callers share the node's 50 checks a
// second. One reader certificate (any role may offer) used from 40 source
// addresses (127.0.0.10 to .49 here: 40 cloud addresses, or 40 /64s of one
// IPv6 /48) spends every token with forged newer states, and the
// operator's push, retried as internal/push does (4 attempts over about
// 2 s), is refused RESOURCE_EXHAUSTED: the revocation waits for the
// node's refresh from the store (hourly by default).
func TestReviewOfferFloodFromManySourcesStarvesThePush(t *testing.T) {
	o := newOfferFleet(t)
	held := o.heldTrust(t)
	certPEM, keyPEM := clientCert(t, o.ca, []string{string(pki.Reader)}, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	e := *o.rnx.Nodes["default"]
	e.Cert, e.Key = certPEM, keyPEM
	tc, err := client.TLSConfig(&e)
	if err != nil {
		t.Fatal(err)
	}
	forged := o.trust(t, forger(t, o.ca), held.Version+100, nil)

	fctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var spent, exhausted atomic.Int64
	for i := 0; i < 100; i++ {
		src := &net.TCPAddr{IP: net.ParseIP(fmt.Sprintf("127.0.0.%d", 10+i))}
		d := &net.Dialer{LocalAddr: src}
		cc, err := grpc.NewClient(e.Address, grpc.WithTransportCredentials(credentials.NewTLS(tc)),
			grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		node := pb.NewNodeServiceClient(cc)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for fctx.Err() == nil {
				_, err := node.OfferCRL(fctx, &pb.OfferCRLRequest{TrustState: forged})
				if status.Code(err) == codes.InvalidArgument {
					spent.Add(1) // checked: a token spent
				} else if status.Code(err) == codes.ResourceExhausted {
					exhausted.Add(1)
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}
	t.Cleanup(func() { stop(); wg.Wait() })
	time.Sleep(5 * time.Second) // connections up, the node's burst spent

	// Ten pushes (ten genuine newer states), each retried as internal/push
	// does; each must be taken, as it is with no flood.
	starved := 0
	var last error
	for k := uint64(1); k <= 10; k++ {
		genuine := o.trust(t, o.ca, held.Version+k, held.MinCRL)
		wait, taken := 250*time.Millisecond, false
		for a := 1; a <= 4 && !taken; a++ {
			res, err := o.admin.Node.OfferCRL(ctx(t), &pb.OfferCRLRequest{TrustState: genuine})
			if taken = err == nil && res.TrustTaken; !taken {
				last = err
				time.Sleep(wait)
				wait *= 2
			}
		}
		if !taken {
			starved++
		}
	}
	t.Logf("%d forged states checked, %d refused exhausted", spent.Load(), exhausted.Load())
	if starved > 0 {
		t.Errorf("STARVED: %d of 10 operator pushes (4 attempts each, as internal/push makes them) refused during a flood by one reader certificate from 100 addresses: %v", starved, last)
	}
}
