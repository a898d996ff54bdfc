package server_test

import (
	"context"
	"crypto/x509"
	"sync"
	"testing"

	"github.com/ehsaniara/joblet/internal/client"
)

// BenchmarkGetNodeInfo is `rnx info`'s call over 16 mutual-TLS
// connections, server and clients in this process: with -cpuprofile it
// shows what a call costs the node beyond gRPC itself.
func BenchmarkGetNodeInfo(b *testing.B) {
	b.Run("plain", func(b *testing.B) { benchInfo(b, false) })
	// As rnx calls: each call carries the client's CRL number (crlgate.go).
	b.Run("crl-number", func(b *testing.B) { benchInfo(b, true) })
}

func benchInfo(b *testing.B, learning bool) {
	f := startNode(b, nil)
	const conns = 16
	var wg sync.WaitGroup
	per := b.N/conns + 1
	b.ResetTimer()
	for i := 0; i < conns; i++ {
		c := dial(b, "default", f.rnx.Nodes["default"])
		if learning {
			var err error
			if c, err = client.DialLearning("default", f.rnx.Nodes["default"], func([]byte, [][]*x509.Certificate) error { return nil }); err != nil {
				b.Fatal(err)
			}
			defer c.Close()
		}
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
