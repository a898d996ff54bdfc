package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// revoke takes a client config, names who is cut off and how nodes take
// the CRL; --reason takes a number and lists the valid ones.
func TestRevokeClientConfig(t *testing.T) {
	home, store := t.TempDir(), "dir:"+t.TempDir()
	if code, _, errs := runIn(t, "certs", "bootstrap", "--home", home, "--server-address", "127.0.0.1", "--store", store); code != 0 {
		t.Fatalf("bootstrap: %d %s", code, errs)
	}
	dev := filepath.Join(home, "config", "rnx-config-developer.yml")
	cfg, _ := config.LoadRnx(dev)
	crt, _ := pki.ParseLeaf([]byte(cfg.Nodes["default"].Cert))

	code, out, errs := runIn(t, "certs", "revoke", "--store", store, "--config", dev, "--reason", "4")
	if code != 0 {
		t.Fatalf("revoke --config: exit %d: %s", code, errs)
	}
	for _, want := range []string{pki.SerialHex(crt.SerialNumber), "(superseded)", "cut off: every client config holding this developer certificate",
		"joblet certs reissue --role developer", "systemctl reload joblet"} {
		if !strings.Contains(out, want) {
			t.Errorf("revoke output lacks %q:\n%s", want, out)
		}
	}
	// The operator's config: --node picks the entry.
	code, out, errs = runIn(t, "certs", "revoke", "--store", store, "--config", filepath.Join(home, "config", "rnx-config.yml"), "--node", "reader", "--json")
	var res struct{ Serial, Reason, CutOff string }
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || !strings.Contains(res.CutOff, "reader certificate") || res.Reason != "unspecified" {
		t.Fatalf("revoke --config --node reader: exit %d %s\n%s", code, errs, out)
	}
	code, _, errs = runIn(t, "certs", "revoke", "--store", store, "--serial", "01", "--reason", "9")
	if code != 2 || !strings.Contains(errs, "unspecified (0), keyCompromise (1), cACompromise (2), affiliationChanged (3), superseded (4), cessationOfOperation (5)") {
		t.Fatalf("--reason 9: exit %d: %s", code, errs)
	}
	if code, _, errs := runIn(t, "certs", "revoke", "--store", store, "--serial", "01", "--config", dev); code != 2 || !strings.Contains(errs, "give one of --serial, --cert or --config") {
		t.Fatalf("two targets: exit %d: %s", code, errs)
	}
}
