// Command floorclient is the benchmark's floor for one rnx command: the
// same steps `rnx info` takes with nothing else. It reads an rnx config,
// takes the one node it is told, dials it over mutual TLS with the node's
// certificate, key and CA, makes one GetNodeInfo call and prints the node
// id. Never part of a release.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"gopkg.in/yaml.v3"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

type node struct {
	Address string `yaml:"address"`
	Cert    string `yaml:"cert"`
	Key     string `yaml:"key"`
	CA      string `yaml:"ca"`
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: floorclient RNX_CONFIG NODE")
		os.Exit(2)
	}
	if err := run(os.Args[1], os.Args[2]); err != nil {
		fmt.Fprintln(os.Stderr, "floorclient:", err)
		os.Exit(1)
	}
}

func run(path, name string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cfg struct {
		Nodes map[string]node `yaml:"nodes"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		return err
	}
	n, ok := cfg.Nodes[name]
	if !ok {
		return fmt.Errorf("no node %q", name)
	}
	cert, err := tls.X509KeyPair([]byte(n.Cert), []byte(n.Key))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM([]byte(n.CA))
	host, _, err := net.SplitHostPort(n.Address)
	if err != nil {
		return err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}, RootCAs: pool, ServerName: host}
	cc, err := grpc.NewClient(n.Address, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := pb.NewNodeServiceClient(cc).GetNodeInfo(ctx, &pb.GetNodeInfoRequest{})
	if err != nil {
		return err
	}
	fmt.Println(info.NodeId)
	return nil
}
