package certs_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
)

func certNames(t *testing.T, home string) []string {
	t.Helper()
	srv, err := config.LoadServer(filepath.Join(home, "config", "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pki.ParseLeaf([]byte(srv.Security.ServerCert))
	if err != nil {
		t.Fatal(err)
	}
	names := append([]string{}, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	slices.Sort(names)
	return names
}

// A re-run given none of the node's settings (its original environment
// gone) keeps them all: listen address, port, names, lifetime.
func TestRerunKeepsNodeSettings(t *testing.T) {
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	o.PublicAddress, o.Port, o.AdditionalNames = "lb.example.com:443", 50123, []string{"node1.internal"}
	o.ServerLifetime = 72 * time.Hour
	bootstrap(t, o)
	before := certNames(t, o.Home)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")

	bare := opts(t, st)
	bare.Home = o.Home
	bare.ListenAddress, bare.ServerAddress, bare.Port = "", "", 0
	bare.FallbackServerAddress = "10.9.9.9" // what a machine's primary IP might say now
	bootstrap(t, bare)
	if after := certNames(t, o.Home); !slices.Equal(before, after) {
		t.Fatalf("names changed: %v -> %v", before, after)
	}
	srv, _ := config.LoadServer(cfgPath)
	if srv.Server.Address != "127.0.0.1" || srv.Server.Port != 50123 || srv.Server.ServerAddress != "10.1.2.3" ||
		srv.Server.PublicAddress != "lb.example.com:443" || !slices.Equal(srv.Server.AdditionalNames, []string{"node1.internal"}) ||
		srv.Security.ServerLifetime != "72h0m0s" {
		t.Fatalf("settings not kept: %+v, lifetime %s", srv.Server, srv.Security.ServerLifetime)
	}

	// Given a new port, or fewer names: refused, naming both values, and
	// nothing written.
	old, _ := os.ReadFile(cfgPath)
	moved := bare
	moved.Port = 50124
	_, err := boot(context.Background(), moved)
	if err == nil || !strings.Contains(err.Error(), "from 50123 to 50124") || !strings.Contains(err.Error(), "--reconfigure") {
		t.Fatalf("moving the port: %v", err)
	}
	fewer := bare
	fewer.AdditionalNames = []string{}
	fewer.Given = certs.GivenAdditionalNames
	_, err = boot(context.Background(), fewer)
	if err == nil || !strings.Contains(err.Error(), "lose node1.internal") {
		t.Fatalf("dropping a name: %v", err)
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(old) {
		t.Fatal("a refused re-run changed the config")
	}
	// Adding a name widens what the certificate may be presented as:
	// refused too, naming it, unless --reconfigure, which reports it.
	more := bare
	more.AdditionalNames = []string{"node1.internal", "node1.example"}
	_, err = boot(context.Background(), more)
	if err == nil || !strings.Contains(err.Error(), "also carry node1.example") || !strings.Contains(err.Error(), "--reconfigure") {
		t.Fatalf("adding a name: %v", err)
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(old) {
		t.Fatal("a refused re-run changed the config")
	}
	more.Reconfigure = true
	if res := bootstrap(t, more); !slices.Equal(res.AddedNames, []string{"node1.example"}) {
		t.Fatalf("added names reported: %v", res.AddedNames)
	}
	if names := certNames(t, o.Home); !slices.Contains(names, "node1.example") {
		t.Fatalf("reconfigured names: %v", names)
	}
	// On purpose: done.
	fewer.Reconfigure = true
	bootstrap(t, fewer)
	if names := certNames(t, o.Home); slices.Contains(names, "node1.internal") || !slices.Contains(names, "lb.example.com") {
		t.Fatalf("reconfigured names: %v", names)
	}
}

// A config written before the names were recorded keeps every name its
// certificate carries; `certs status` flags a certificate that lacks a
// configured name.
func TestRerunKeepsLegacyNamesAndStatusFlagsMissing(t *testing.T) {
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	o.PublicAddress = "lb.example.com"
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	srv, _ := config.LoadServer(cfgPath)
	srv.Server.ServerAddress, srv.Server.PublicAddress, srv.Server.AdditionalNames = "", "", nil
	b, _ := srv.Marshal()
	os.WriteFile(cfgPath, b, 0o600)

	bare := opts(t, st)
	bare.Home = o.Home
	bare.ListenAddress, bare.ServerAddress, bare.Port = "", "", 0
	bootstrap(t, bare)
	if names := certNames(t, o.Home); !slices.Contains(names, "lb.example.com") || !slices.Contains(names, "10.1.2.3") {
		t.Fatalf("a legacy config's names were dropped: %v", names)
	}

	rep := o.Fleet.Status(context.Background(), certs.StatusOptions{ServerConfig: cfgPath, WarnDays: 30})
	for _, c := range rep.Certificates {
		if c.Name == "Server Certificate" && len(c.Problems) > 0 {
			t.Fatalf("a certificate with every configured name flagged: %v", c.Problems)
		}
	}
	srv, _ = config.LoadServer(cfgPath)
	srv.Server.AdditionalNames = append(srv.Server.AdditionalNames, "added-by-hand.internal")
	b, _ = srv.Marshal()
	os.WriteFile(cfgPath, b, 0o600)
	rep = o.Fleet.Status(context.Background(), certs.StatusOptions{ServerConfig: cfgPath, WarnDays: 30})
	found := false
	for _, c := range rep.Certificates {
		if c.Name == "Server Certificate" {
			for _, p := range c.Problems {
				found = found || strings.Contains(p, "lacks added-by-hand.internal")
			}
		}
	}
	if !found || rep.Level < certs.Attention {
		t.Fatalf("status does not flag the missing name (level %d): %+v", rep.Level, rep.Certificates)
	}
}

// The attacker review's repro: a settings file naming another node id and
// a balancer's names, on an installed node, without --reconfigure. The
// node id is kept unless given; a given other id or added names are
// refused naming both values, nothing written; with --reconfigure they
// apply and the added names are reported.
func TestRerunRefusesNodeIDChangeAndWidening(t *testing.T) {
	st := storetest.NewMemoryStore()
	o := opts(t, st)
	o.NodeID = "node-1"
	bootstrap(t, o)
	cfgPath := filepath.Join(o.Home, "config", "joblet-config.yml")
	kept := opts(t, st)
	kept.Home = o.Home
	if res := bootstrap(t, kept); res.NodeID != "node-1" || len(res.AddedNames) != 0 {
		t.Fatalf("a re-run not given the node id: %s, added %v", res.NodeID, res.AddedNames)
	}
	before, _ := os.ReadFile(cfgPath)

	stolen := kept
	stolen.NodeID = "node-stolen"
	stolen.AdditionalNames = []string{"balancer.example.com", "10.9.9.9"}
	_, err := boot(context.Background(), stolen)
	for _, want := range []string{"from node-1 to node-stolen", "also carry balancer.example.com, 10.9.9.9", "--reconfigure"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want %q in the refusal: %v", want, err)
		}
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(before) {
		t.Fatal("a refused re-run changed the config")
	}
	// The same node id, given: no change.
	same := kept
	same.NodeID = "node-1"
	bootstrap(t, same)

	stolen.Reconfigure = true
	res := bootstrap(t, stolen)
	srv, _ := config.LoadServer(cfgPath)
	if res.NodeID != "node-stolen" || srv.Server.NodeID != "node-stolen" {
		t.Fatalf("--reconfigure: node id %s / %s", res.NodeID, srv.Server.NodeID)
	}
	slices.Sort(res.AddedNames)
	if !slices.Equal(res.AddedNames, []string{"10.9.9.9", "balancer.example.com"}) {
		t.Fatalf("added names reported: %v", res.AddedNames)
	}
}
