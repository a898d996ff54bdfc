package test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// Garbage written to <prefix>/ca-bundle (all that one write permission
// allows, without the root key) stalls nothing: `certs revoke` runs (it
// needs only the root key and the CRL), and a running node's refresh goes
// on, takes the new CRL, keeps the trust it holds and logs why the bundle
// was not taken. In a directory store and in Secrets Manager (moto).
func TestGarbageBundleStallsNothing(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"dir", "secretsmanager"} {
		t.Run(mode, func(t *testing.T) { garbageBundle(t, mode) })
	}
}

func garbageBundle(t *testing.T, mode string) {
	joblet, rnx := harness.Bins(t)
	const garbage = "-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n"
	var home string
	var env []string
	var writeGarbage func()
	switch mode {
	case "dir":
		store := filepath.Join(t.TempDir(), "store")
		home, _, env = smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false", "JOBLET_STORE=dir:"+store)
		writeGarbage = func() {
			if err := os.WriteFile(filepath.Join(store, "joblet", "ca-bundle"), []byte(garbage), 0o600); err != nil {
				t.Fatal(err)
			}
		}
	default:
		moto := resetMoto(t)
		home, _, env = smNode(t, moto.URL)
		writeGarbage = func() {
			c, ctx := smClient(moto.URL), context.Background()
			_, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String("joblet/ca-bundle"), SecretString: aws.String(garbage)})
			var nf *smtypes.ResourceNotFoundException
			if errors.As(err, &nf) {
				_, err = c.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String("joblet/ca-bundle"), SecretString: aws.String(garbage)})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	srv := harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	admin := harness.Env("RNX_CONFIG=" + filepath.Join(home, "config", "rnx-config.yml"))
	reader := harness.Env("RNX_CONFIG=" + filepath.Join(home, "config", "rnx-config-reader.yml"))
	harness.Eventually(t, 20*time.Second, "node up", func() error {
		if r := harness.Run(t, reader, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	trustBefore := serverConfig(t, home).Security.CACert

	writeGarbage()
	rc, _ := config.LoadRnx(filepath.Join(home, "config", "rnx-config-reader.yml"))
	certFile := filepath.Join(t.TempDir(), "reader.pem")
	os.WriteFile(certFile, []byte(rc.Nodes["default"].Cert), 0o600)
	r := harness.Run(t, env, joblet, "certs", "revoke", "--cert", certFile, "--reason", "keyCompromise")
	// A directory store keeps no history: revoke ignores the garbage and
	// signs with the current root alone. Secrets Manager keeps the newest
	// signed state under the garbage: revoke acts on it.
	said := "does not hold a usable certificate bundle"
	if mode == "secretsmanager" {
		said = "it was written without the root key"
	}
	if r.Code != 0 || !strings.Contains(r.Stdout, "revoked serial") || !strings.Contains(r.Stdout+r.Stderr, said) {
		t.Fatalf("revoke with a garbage bundle: %s", r)
	}
	harness.Eventually(t, 30*time.Second, "the revoked reader refused by the refreshing node", func() error {
		if r := harness.Run(t, reader, rnx, "info"); r.Code == 0 {
			return errors.New("still accepted")
		}
		return nil
	})
	// In Secrets Manager the revoke re-signed the newest state over the
	// garbage (the node may never have seen it); in a directory store the
	// garbage stays and the node reports it.
	if mode == "secretsmanager" {
		if b := readBundle(t); !pki.IsSignedTrust([]byte(b)) {
			t.Fatalf("the revoke left the garbage in ca-bundle: %q", b)
		}
	} else if !strings.Contains(srv.Output(), "the store's trust bundle was not taken") {
		t.Fatalf("the node did not report the garbage bundle:\n%s", srv.Output())
	}
	if got := serverConfig(t, home).Security.CACert; got != trustBefore {
		t.Fatalf("the node's trust changed:\n%s", got)
	}
	harness.MustRun(t, admin, rnx, "info")
	reliability.Record(t, "security", "garbage written to "+mode+" store's ca-bundle, then `certs revoke` of the reader (node refreshes every 1 s)",
		"revoke ran, the node refused the reader, kept its trust, admin served; logged: the store's trust bundle was not taken")
}

// readBundle is joblet/ca-bundle's current value in moto.
func readBundle(t *testing.T) string { return currentValue(t, "joblet/ca-bundle") }

// currentValue is a secret's current value in moto (readStore reads only
// the secrets a first node creates).
func currentValue(t *testing.T, name string) string {
	t.Helper()
	got, err := smClient(motoFor(t).URL).GetSecretValue(context.Background(), &sm.GetSecretValueInput{SecretId: aws.String(name)})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(got.SecretString)
}
