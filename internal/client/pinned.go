package client

import (
	"context"
	"fmt"
	"net"
	"sync"

	"google.golang.org/grpc"

	"github.com/ehsaniara/joblet/internal/config"
)

// DialPinned is DialLearning on exactly one TCP connection: when it
// breaks, calls fail instead of gRPC dialing again. Behind a load
// balancer, a new connection can land on another node, where a job's ID
// means nothing; a connection found to reach the job's node
// (internal/route) must stay that node's or fail, and a follow cut by the
// node's death must end, not resume elsewhere. learn may be nil.
func DialPinned(name string, n *config.Node, learn Learn) (*Conn, error) {
	var mu sync.Mutex
	dialed := false
	d := &net.Dialer{}
	once := func(ctx context.Context, addr string) (net.Conn, error) {
		mu.Lock()
		defer mu.Unlock()
		if dialed {
			return nil, fmt.Errorf("the connection to node %q (%s) was lost; not dialing again, since another connection may reach another node", name, addr)
		}
		dialed = true
		return d.DialContext(ctx, "tcp", addr)
	}
	return dial(name, n, learn, grpc.WithContextDialer(once))
}
