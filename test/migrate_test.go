package test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

func embeddedHome(t *testing.T) (string, []string) {
	t.Helper()
	joblet, _ := harness.Bins(t)
	home, _, env := smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false")
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	return home, env
}

func caFingerprint(t *testing.T, pemText string) string {
	t.Helper()
	c, err := pki.ParseCert([]byte(pemText))
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", sha256.Sum256(c.Raw))
}

// Embedded install -> import into Secrets Manager -> a new node bootstrapped
// through the store -> the old operator config works against it.
func TestImportRoundTrip(t *testing.T) {
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	homeA, _ := embeddedHome(t)
	oldCfg := filepath.Join(homeA, "config", "rnx-config.yml")
	srvA := serverConfig(t, homeA)

	_, _, smEnv := smNode(t, moto.URL)
	r := harness.MustRun(t, smEnv, joblet, "certs", "import", "--from-home", homeA)
	if !strings.Contains(r.Stdout, "imported") || !strings.Contains(r.Stdout, "admin client certificate: imported") {
		t.Fatalf("%s", r)
	}
	stored := readStore(t, "joblet")
	checkStore(t, stored, "joblet")
	if caFingerprint(t, stored["joblet/ca-cert"]) != caFingerprint(t, srvA.Security.CACert) {
		t.Fatal("the imported CA differs from the install's")
	}
	if r := harness.MustRun(t, smEnv, joblet, "certs", "import", "--from-home", homeA); !strings.Contains(r.Stdout, "nothing to do") {
		t.Fatalf("re-import: %s", r)
	}

	homeB, portB, envB := smNode(t, moto.URL)
	harness.MustRun(t, envB, joblet, "certs", "bootstrap")
	harness.Start(t, envB, joblet, "server", "--config", filepath.Join(homeB, "config", "joblet-config.yml"))
	b, _ := os.ReadFile(oldCfg)
	direct := filepath.Join(t.TempDir(), "old.yml")
	addrA := "127.0.0.1:" + itoa(srvA.Server.Port)
	os.WriteFile(direct, []byte(strings.ReplaceAll(string(b), addrA, fmt.Sprintf("127.0.0.1:%d", portB))), 0o600)
	harness.Eventually(t, 10*time.Second, "the old operator config against the new node", func() error {
		if r := harness.Run(t, harness.Env(), rnx, "--config", direct, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})

	// Another fleet's CA is refused, naming what is there; --force replaces
	// it and keeps the previous version.
	homeC, _ := embeddedHome(t)
	r = harness.Run(t, smEnv, joblet, "certs", "import", "--from-home", homeC)
	if r.Code != 1 || !strings.Contains(r.Stderr, "already holds a CA (serial") || !strings.Contains(r.Stderr, "--force") {
		t.Fatalf("import over another CA: %s", r)
	}
	if after := readStore(t, "joblet"); after["joblet/ca-cert"] != stored["joblet/ca-cert"] {
		t.Fatal("a refused import changed the store")
	}
	harness.MustRun(t, smEnv, joblet, "certs", "import", "--from-home", homeC, "--force")
	prev := awsCLI(t, "secretsmanager", "get-secret-value", "--secret-id", "joblet/ca-cert", "--version-stage", "AWSPREVIOUS", "--query", "SecretString", "--output", "text")
	if strings.TrimSpace(prev) != strings.TrimSpace(stored["joblet/ca-cert"]) {
		t.Fatal("the replaced CA is not AWSPREVIOUS")
	}
}

func TestImportErrorsAndFiles(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	homeA, _ := embeddedHome(t)
	_, _, smEnv := smNode(t, moto.URL)

	// An install whose CA key was never kept (the old shell scripts).
	old := t.TempDir()
	os.MkdirAll(filepath.Join(old, "config"), 0o700)
	cfg, _ := os.ReadFile(filepath.Join(homeA, "config", "joblet-config.yml"))
	os.WriteFile(filepath.Join(old, "config", "joblet-config.yml"), cfg, 0o600)
	r := harness.Run(t, smEnv, joblet, "certs", "import", "--from-home", old)
	if r.Code != 1 || !strings.Contains(r.Stderr, "did not keep it") || !strings.Contains(r.Stderr, "Start the shared store with a new CA") {
		t.Fatalf("no CA key: %s", r)
	}
	r = harness.Run(t, smEnv, joblet, "certs", "import", "--from-home", homeA, "--ca-cert", "x")
	if r.Code != 2 || !strings.Contains(r.Stderr, "contradict") {
		t.Fatalf("two sources: %s", r)
	}
	if v := readStore(t, "joblet"); len(v) != 0 {
		t.Fatal("a failed import wrote secrets")
	}

	// From files: the CA pair and the admin pair; the other roles are issued.
	ca := filepath.Join(homeA, "ca", "joblet")
	r = harness.MustRun(t, smEnv, joblet, "certs", "import", "--ca-cert", filepath.Join(ca, "ca-cert"), "--ca-key", filepath.Join(ca, "ca-key"),
		"--client", "admin="+filepath.Join(ca, "client-cert")+","+filepath.Join(ca, "client-key"))
	if !strings.Contains(r.Stdout, "admin client certificate: imported") || !strings.Contains(r.Stdout, "reader client certificate: issued") {
		t.Fatalf("%s", r)
	}
	checkStore(t, readStore(t, "joblet"), "joblet")

	// A key that does not match its certificate is refused before writing.
	resetMoto(t)
	r = harness.Run(t, smEnv, joblet, "certs", "import", "--ca-cert", filepath.Join(ca, "ca-cert"), "--ca-key", filepath.Join(ca, "client-key"))
	if r.Code != 1 || !strings.Contains(r.Stderr, "is not the certificate of") {
		t.Fatalf("mismatched pair: %s", r)
	}
	if v := readStore(t, "joblet"); len(v) != 0 {
		t.Fatal("a refused import wrote secrets")
	}
}

// Moving off AWS: export writes an embedded install with the fleet's CA.
func TestExport(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, smEnv := smNode(t, moto.URL)
	harness.MustRun(t, smEnv, joblet, "certs", "bootstrap")
	stored := readStore(t, "joblet")

	homeE, _, envE := smNode(t, moto.URL)
	r := harness.MustRun(t, envE, joblet, "certs", "export")
	if !strings.Contains(r.Stdout, "exported the shared certificates") || !strings.Contains(r.Stdout, "embedded mode") {
		t.Fatalf("%s", r)
	}
	if serverConfig(t, homeE).Security.CACert != stored["joblet/ca-cert"] {
		t.Fatal("the exported install does not use the fleet's CA")
	}
	// From now on it runs without AWS and keeps the CA.
	off := append(envE, "USE_SECRETS_MANAGER=false", "AWS_ENDPOINT_URL_SECRETS_MANAGER="+harness.ClosedURL)
	r = harness.MustRun(t, off, joblet, "certs", "bootstrap")
	if !strings.Contains(r.Stdout, "✅ CA Certificate: Retrieved from directory store") {
		t.Fatalf("%s", r)
	}
	if serverConfig(t, homeE).Security.CACert != stored["joblet/ca-cert"] {
		t.Fatal("the CA changed after moving off AWS")
	}
	if r := harness.Run(t, append(envE, "USE_SECRETS_MANAGER=false"), joblet, "certs", "export"); r.Code != 2 || !strings.Contains(r.Stderr, "reads a shared store") {
		t.Fatalf("export from embedded: %s", r)
	}
}
