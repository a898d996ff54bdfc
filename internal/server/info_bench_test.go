package server_test

import (
	"context"
	"sync"
	"testing"
)

// BenchmarkGetNodeInfo is `rnx info`'s call over 16 mutual-TLS
// connections, server and clients in this process: with -cpuprofile it
// shows what a call costs the node beyond gRPC itself.
func BenchmarkGetNodeInfo(b *testing.B) {
	f := startNode(b, nil)
	const conns = 16
	var wg sync.WaitGroup
	per := b.N/conns + 1
	b.ResetTimer()
	for i := 0; i < conns; i++ {
		c := dial(b, "default", f.rnx.Nodes["default"])
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < per; j++ {
				if _, err := c.Info(context.Background()); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
