package test

import (
	"context"
	"crypto/x509"
	"github.com/ehsaniara/joblet/internal/certs"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
	"github.com/ehsaniara/joblet/test/harness"
)

// smClient talks to moto directly (not through the binary under test).
func smClient(url string) *sm.Client {
	return sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(url),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
}

// readStore returns every shared secret of prefix that exists in moto.
func readStore(t *testing.T, prefix string) map[string]string {
	t.Helper()
	st := awssm.New(smClient(motoFor(t).URL), "moto", nil)
	v, err := st.Get(context.Background(), certs.Names{Prefix: prefix}.All())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// checkStore asserts the stored state is whole and consistent: a CA whose
// key matches, and every role pair matching and chaining to it. It returns
// the CA.
func checkStore(t *testing.T, vals map[string]string, prefix string) *x509.Certificate {
	t.Helper()
	n := certs.Names{Prefix: prefix}
	if len(vals) != len(n.All()) {
		t.Fatalf("store holds %d of %d secrets", len(vals), len(n.All()))
	}
	ca, err := pki.ParseCert([]byte(vals[n.CACert()]))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey([]byte(vals[n.CAKey()]))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.MatchesKey(ca, key); err != nil {
		t.Fatal("CA pair:", err)
	}
	for _, r := range pki.Roles {
		c, err := pki.ParseCert([]byte(vals[n.ClientCert(r)]))
		if err != nil {
			t.Fatal(err)
		}
		k, err := pki.ParseKey([]byte(vals[n.ClientKey(r)]))
		if err != nil {
			t.Fatal(err)
		}
		if err := pki.MatchesKey(c, k); err != nil {
			t.Fatalf("%s pair: %v", r, err)
		}
		if err := pki.VerifyLeaf(c, []*x509.Certificate{ca}, x509.ExtKeyUsageClientAuth, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	return ca
}

// smNode is the environment of one node bootstrapping through Secrets
// Manager at url (moto or a proxy in front of it).
func smNode(t testing.TB, url string, extra ...string) (home string, port int, env []string) {
	home = t.TempDir()
	port = harness.FreePort(t)
	env = harness.Env(append(harness.AWSEnv(url), append([]string{"JOBLET_HOME=" + home, "USE_SECRETS_MANAGER=true",
		"JOBLET_SERVER_ADDRESS=127.0.0.1", "JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT=" + strconv.Itoa(port)}, extra...)...)...)
	return home, port, env
}

func serverConfig(t *testing.T, home string) *config.Server {
	t.Helper()
	s, err := config.LoadServer(filepath.Join(home, "config", "joblet-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// noFiles asserts a failed run left no config behind.
func noFiles(t *testing.T, home string) {
	t.Helper()
	if entries, err := os.ReadDir(filepath.Join(home, "config")); err == nil && len(entries) > 0 {
		t.Fatalf("a failed run wrote %d config files", len(entries))
	}
}
