package login

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// A login beside the config replaces every node's certificate until it
// expires; rnx warns in its last half hour and, once it expired, says to
// log in again rather than fall back to another identity. A people's
// config without a login says to log in.
func TestLoginApply(t *testing.T) {
	now := time.Now()
	rootKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	rootCert, _ := pki.NewCA(rootKey, now.Add(-time.Hour), 24*time.Hour)
	root := &pki.CA{Cert: rootCert, Key: rootKey}
	ukey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	uca, err := root.IssueUserCA(ukey.Public(), now.Add(-time.Hour), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	user := &pki.CA{Cert: uca.Cert, Key: ukey}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "rnx-config.yml")
	people := func() *config.Rnx {
		return &config.Rnx{Version: config.RnxVersion, Login: &config.Login{Issuer: "https://issuer.example"},
			Nodes: map[string]*config.Node{"default": {Address: "lb:50051", CA: string(pki.EncodeCert(rootCert))}}}
	}
	if _, err := Apply(people(), cfgPath, now); err == nil || !strings.Contains(err.Error(), "run `rnx login`") {
		t.Errorf("a people's config without a login: %v", err)
	}
	save := func(lifetime time.Duration) {
		key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		is, err := user.IssuePerson(key.Public(), pki.Person{ARN: "arn:aws:iam::123456789012:user/alice", Role: pki.Developer}, now.Add(-time.Minute), lifetime)
		if err != nil {
			t.Fatal(err)
		}
		kp, _ := pki.EncodeKey(key)
		c, err := parse(string(pki.EncodeCert(is.Cert))+string(pki.EncodeCert(uca.Cert)), string(kp))
		if err != nil {
			t.Fatal(err)
		}
		if err := Save(Path(cfgPath), c); err != nil {
			t.Fatal(err)
		}
	}
	save(8 * time.Hour)
	if fi, _ := os.Stat(Path(cfgPath)); fi.Mode().Perm() != 0o600 {
		t.Errorf("the login file is mode %04o", fi.Mode().Perm())
	}
	cfg := people()
	warn, err := Apply(cfg, cfgPath, now)
	if err != nil || warn != "" || !strings.Contains(cfg.Nodes["default"].Cert, "BEGIN CERTIFICATE") || cfg.Nodes["default"].Key == "" {
		t.Errorf("a fresh login: warn %q err %v", warn, err)
	}
	if warn, err := Apply(people(), cfgPath, now.Add(8*time.Hour-20*time.Minute)); err != nil || !strings.Contains(warn, "expires in") {
		t.Errorf("20 minutes before expiry: warn %q err %v", warn, err)
	}
	shared := people()
	shared.Nodes["default"].Cert, shared.Nodes["default"].Key = "shared-cert", "shared-key"
	if _, err := Apply(shared, cfgPath, now.Add(9*time.Hour)); err == nil || !strings.Contains(err.Error(), "expired") || shared.Nodes["default"].Cert != "shared-cert" {
		t.Errorf("an expired login over a shared config: %v (cert %q)", err, shared.Nodes["default"].Cert)
	}
	os.WriteFile(Path(cfgPath), []byte("junk"), 0o600)
	if _, err := Apply(people(), cfgPath, now); err == nil || !strings.Contains(err.Error(), "rnx login") {
		t.Errorf("a damaged login file: %v", err)
	}
}
