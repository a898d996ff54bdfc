// Command floorserver is the benchmark's floor for serving: the least a
// server on joblet's certificates can do. In -mode tls it is a bare
// crypto/tls mutual-TLS server (the handshake, the HTTP/2 preface, one
// SETTINGS frame); in -mode grpc a bare gRPC server on the same TLS whose
// GetNodeInfo answers a NodeInfo made once, of the size joblet's is. No
// authorization, revocation, metrics or logging: what joblet adds to this
// is what the bench measures. Never part of a release.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

func main() {
	mode := flag.String("mode", "grpc", "tls or grpc")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	certFile := flag.String("cert", "", "server certificate (PEM)")
	keyFile := flag.String("key", "", "server key (PEM)")
	caFile := flag.String("ca", "", "client CAs (PEM)")
	crlFile := flag.String("crl", "", "a CRL to hand out in NodeInfo, as joblet does (PEM)")
	workers := flag.Uint("workers", 0, "gRPC stream workers (grpc.NumStreamWorkers), as joblet serves calls; 0: gRPC's default, a goroutine per call")
	flag.Parse()

	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		log.Fatal(err)
	}
	caPEM, err := os.ReadFile(*caFile)
	if err != nil {
		log.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		log.Fatal("no CA in ", *caFile)
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool, NextProtos: []string{"h2"}}
	l, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(l.Addr().String())
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, os.Interrupt, syscall.SIGTERM)
		<-ch
		os.Exit(0)
	}()
	switch *mode {
	case "tls":
		serveTLS(l, tc)
	case "grpc":
		var crl []byte
		if *crlFile != "" {
			if crl, err = os.ReadFile(*crlFile); err != nil {
				log.Fatal(err)
			}
		}
		info := &pb.NodeInfo{NodeId: "floor-node-0000000000", Version: "floor", ServerCertSerial: fmt.Sprintf("%x", cert.Leaf.SerialNumber),
			ServerCertNotAfterUnix: cert.Leaf.NotAfter.Unix(), CallerRole: "admin",
			ServerCertIssuerSha256: "0000000000000000000000000000000000000000000000000000000000000000", Crl: crl,
			JobIsolation: "full (uid 65534, network none; per job memory 512 MiB, cpu 100%, procs 256 by default, at most 4 GiB, 200%, 4096)"}
		s := grpc.NewServer(grpc.Creds(credentials.NewTLS(tc)), grpc.NumStreamWorkers(uint32(*workers)))
		pb.RegisterNodeServiceServer(s, &node{info: info})
		log.Fatal(s.Serve(l))
	default:
		log.Fatalf("unknown -mode %q", *mode)
	}
}

type node struct {
	pb.UnimplementedNodeServiceServer
	info *pb.NodeInfo
}

func (n *node) GetNodeInfo(context.Context, *pb.GetNodeInfoRequest) (*pb.NodeInfo, error) {
	return n.info, nil
}

// settings is an empty HTTP/2 SETTINGS frame: what a gRPC server sends first.
var settings = []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}

func serveTLS(l net.Listener, tc *tls.Config) {
	for {
		c, err := l.Accept()
		if err != nil {
			log.Fatal(err)
		}
		go func() {
			defer c.Close()
			tlsConn := tls.Server(c, tc)
			if err := tlsConn.Handshake(); err != nil {
				return
			}
			tlsConn.Write(settings)
			io.Copy(io.Discard, tlsConn)
		}()
	}
}
