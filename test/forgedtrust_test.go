package test

import (
	"context"
	"crypto/x509"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// The forged-admin attack of issue 22: someone who can write the store but
// holds no root key makes their own CA, an admin certificate from it, and
// writes ca-bundle (a PEM bundle trusting their CA, or a trust state their
// CA signed). A running node, after a refresh and after a restart, refuses
// the forged admin and serves the real one; `rnx config refresh` keeps the
// client's trust; `certs status` says what happened. In Secrets Manager
// (moto), directory and embedded modes.
func TestForgedTrustChangesNothing(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"secretsmanager", "dir", "embedded"} {
		t.Run(mode, func(t *testing.T) { forgedTrust(t, mode) })
	}
}

func forgedTrust(t *testing.T, mode string) {
	joblet, rnx := harness.Bins(t)
	var home string
	var env []string
	var write func(value string)
	switch mode {
	case "secretsmanager":
		moto := resetMoto(t)
		home, _, env = smNode(t, moto.URL)
		write = func(value string) {
			c, ctx := smClient(moto.URL), context.Background()
			_, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String("joblet/ca-bundle"), SecretString: aws.String(value)})
			var nf *smtypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				_, err = c.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String("joblet/ca-bundle"), SecretString: aws.String(value)})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	case "dir":
		store := filepath.Join(t.TempDir(), "store")
		home, _, env = smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false", "JOBLET_STORE=dir:"+store)
		write = func(value string) { writeStoreFile(t, store, value) }
	default:
		home = t.TempDir()
		env = harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
			"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+itoa(harness.FreePort(t)))
		write = func(value string) { writeStoreFile(t, home, value) }
	}
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	start := func() *harness.Proc { return harness.Start(t, env, joblet, "server", "--config", cfgPath) }
	srv := start()
	adminCfg := filepath.Join(home, "config", "rnx-config.yml")
	admin := harness.Env("RNX_CONFIG=" + adminCfg)
	serving := func(what string) {
		t.Helper()
		harness.Eventually(t, 20*time.Second, what, func() error {
			if r := harness.Run(t, admin, rnx, "info"); r.Code != 0 {
				return errors.New(r.String())
			}
			return nil
		})
	}
	serving("node up")
	real := serverConfig(t, home)
	if real.Security.TrustState == "" {
		t.Fatal("the node holds no signed trust state")
	}
	root, err := pki.ParseCert([]byte(real.Security.CACert))
	if err != nil {
		t.Fatal(err)
	}

	// The attacker's CA, an admin certificate from it, and a client config
	// that uses it against the real node (trusting the real root).
	evil := newEvilCA(t)
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	is, err := evil.IssueClient(key.Public(), pki.Admin, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	rc, err := config.LoadRnx(adminCfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range rc.Nodes {
		n.Cert, n.Key, n.CRL, n.Trust = string(pki.EncodeCert(is.Cert)), string(keyPEM), "", ""
		rc.Nodes[name] = n
	}
	forgedCfg := filepath.Join(t.TempDir(), "forged.yml")
	b, _ := rc.Marshal()
	if err := os.WriteFile(forgedCfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	forged := harness.Env("RNX_CONFIG=" + forgedCfg)
	refused := func(when string) {
		t.Helper()
		if r := harness.Run(t, forged, rnx, "job", "run", "--", "id"); r.Code == 0 {
			t.Fatalf("%s: the forged admin ran a job: %s", when, r)
		}
		if r := harness.Run(t, admin, rnx, "job", "run", "--", "true"); r.Code != 0 {
			t.Fatalf("%s: the real admin was refused: %s", when, r)
		}
	}
	refused("before any write")

	signedByEvil, err := pki.SignTrust(context.Background(), pki.NewTrustState("joblet", 1<<40, []*x509.Certificate{evil.Cert, root}, []*x509.Certificate{evil.Cert}, nil, time.Now()), evil)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct{ what, value string }{
		{"a PEM bundle trusting the attacker's CA", string(pki.EncodeCerts(root, evil.Cert))},
		{"a trust state the attacker's CA signed", string(signedByEvil)},
	} {
		write(w.value)
		harness.Eventually(t, 20*time.Second, "the node reports the write", func() error {
			if !strings.Contains(srv.Output(), "trust bundle was not taken") {
				return errors.New("no report in the node's log yet")
			}
			return nil
		})
		time.Sleep(2 * time.Second) // more refreshes: none may change the trust
		refused(w.what + ", after refreshes")
		if got := serverConfig(t, home).Security.CACert; got != real.Security.CACert {
			t.Fatalf("%s: the node's trust changed", w.what)
		}
		// A restart (after a SIGKILL) reads the same store: the real admin
		// is still served, the forged one still refused.
		pid := srv.Cmd.Process.Pid
		srv.Cmd.Process.Kill()
		harness.Eventually(t, 10*time.Second, "the node killed", func() error {
			if syscall.Kill(pid, 0) == nil {
				return errors.New("still running")
			}
			return nil
		})
		srv = start()
		serving(w.what + ": node back after a restart")
		refused(w.what + ", after a restart")
		// The client keeps its trust, and says why.
		r := harness.Run(t, admin, rnx, "config", "refresh")
		if after, _ := config.LoadRnx(adminCfg); strings.Contains(after.Nodes[after.NodeNames()[0]].CA, string(pki.EncodeCert(evil.Cert))) {
			t.Fatalf("%s: rnx config refresh took the attacker's CA: %s", w.what, r)
		}
		if st := harness.Run(t, env, joblet, "certs", "status"); st.Code == 0 || !strings.Contains(st.Stdout+st.Stderr, "ca-bundle") {
			t.Fatalf("%s: certs status exited %d without naming ca-bundle:\n%s", w.what, st.Code, st)
		}
	}
}

// writeStoreFile writes value as the ca-bundle secret of the directory
// store under dir (its <prefix>/ca-bundle file, wherever the mode keeps it).
func writeStoreFile(t *testing.T, dir, value string) {
	t.Helper()
	var path string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && d.Name() == "ca-cert" && filepath.Base(filepath.Dir(p)) == "joblet" {
			path = filepath.Join(filepath.Dir(p), "ca-bundle")
		}
		return nil
	})
	if path == "" {
		t.Fatalf("no directory store under %s", dir)
	}
	if err := os.WriteFile(path, []byte(value), 0o600); err != nil {
		t.Fatal(err)
	}
}

func newEvilCA(t *testing.T) *pki.CA {
	t.Helper()
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := pki.NewCA(key, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return &pki.CA{Cert: cert, Key: key}
}
