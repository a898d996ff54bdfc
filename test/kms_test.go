package test

import (
	"bytes"
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"github.com/ehsaniara/joblet/internal/certs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// kmsKey creates an asymmetric signing key in moto, as an operator's
// infrastructure code would, and returns its ARN.
func kmsKey(t *testing.T, spec string) string {
	t.Helper()
	return strings.TrimSpace(awsCLI(t, "kms", "create-key", "--key-spec", spec, "--key-usage", "SIGN_VERIFY",
		"--query", "KeyMetadata.Arn", "--output", "text"))
}

// kmsPublicKey is the key's public half as KMS gives it.
func kmsPublicKey(t *testing.T, arn string) any {
	t.Helper()
	b64 := strings.TrimSpace(awsCLI(t, "kms", "get-public-key", "--key-id", arn, "--query", "PublicKey", "--output", "text"))
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		t.Fatal(err)
	}
	return pub
}

var kmsNames = certs.Names{Prefix: "joblet"}

// checkKMSStore asserts a KMS-mode store: no ca-key, ca-kms-key naming the
// key, a CA certificate for the KMS key's public half, and every role pair
// matching and verified by openssl against it.
func checkKMSStore(t *testing.T, arn string) map[string]string {
	t.Helper()
	vals := readStore(t, "joblet")
	got, err := kmsStore(t).Get(t.Context(), []string{kmsNames.CAKMSKey()})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := vals[kmsNames.CAKey()]; ok {
		t.Fatal("KMS mode wrote joblet/ca-key")
	}
	if got[kmsNames.CAKMSKey()] != arn {
		t.Fatalf("joblet/ca-kms-key = %q, want %s", got[kmsNames.CAKMSKey()], arn)
	}
	ca, err := pki.ParseCert([]byte(vals[kmsNames.CACert()]))
	if err != nil {
		t.Fatal(err)
	}
	if pub, ok := kmsPublicKey(t, arn).(interface{ Equal(x crypto.PublicKey) bool }); !ok || !pub.Equal(ca.PublicKey) {
		t.Fatal("the CA certificate is not for the KMS key's public key")
	}
	// Self-signed through KMS: openssl checks the signature too.
	openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(vals[kmsNames.CACert()]), "any")
	for _, r := range pki.Roles {
		c, _ := pki.ParseCert([]byte(vals[kmsNames.ClientCert(r)]))
		k, err := pki.ParseKey([]byte(vals[kmsNames.ClientKey(r)]))
		if err != nil || pki.MatchesKey(c, k) != nil {
			t.Fatalf("%s pair: %v", r, err)
		}
		openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(vals[kmsNames.ClientCert(r)]), "sslclient")
	}
	return vals
}

func kmsStore(t *testing.T) secretstore.Store {
	return awsStore(motoFor(t).URL)
}

// First node, joining node, serving with one client config, renewal,
// revocation and status, all with the CA key in KMS; no process reads a CA
// private key.
func TestKMSCA(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"ECC_NIST_P256", "RSA_2048"} {
		t.Run(spec, func(t *testing.T) {
			moto := resetMoto(t)
			joblet, rnx := harness.Bins(t)
			arn := kmsKey(t, spec)
			proxy := harness.StartAWSProxy(t, moto.URL)
			home1, _, env1 := smNode(t, proxy.URL, "JOBLET_CA_KMS_KEY_ID="+arn)
			r := harness.MustRun(t, env1, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
			if !strings.Contains(r.Stdout, "AWS KMS") {
				t.Errorf("bootstrap does not say where the CA key is:\n%s", r.Stdout)
			}
			first := harness.Count(proxy.Calls())
			home2, _, env2 := smNode(t, proxy.URL, "JOBLET_CA_KMS_KEY_ID="+arn)
			harness.MustRun(t, env2, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
			join := harness.Count(proxy.Calls())
			for _, c := range proxy.Recorded() {
				for _, s := range c.Secrets {
					if s == kmsNames.CAKey() {
						t.Fatalf("%s read or wrote %s", c.Action, s)
					}
				}
			}
			// First node: the root's self-signature, the node-issuing CA,
			// 4 client certificates and the signed trust state; its own
			// server certificate and a joining node's come from the
			// node-issuing CA: no KMS call.
			if first["Sign"] != 7 || join["Sign"] != 0 || join["GetPublicKey"] != 0 {
				t.Errorf("kms calls: first node %d Sign, joining node %v; want 7 and none", first["Sign"], join)
			}
			t.Logf("%s: first node %v; joining node %v", spec, first, join)
			vals := checkKMSStore(t, arn)
			for h, want := range map[string]string{home1: arn, home2: ""} {
				s := serverConfig(t, h)
				if s.Security.CAKMSKeyID != want {
					t.Errorf("%s: caKmsKeyId %q, want %q (only the node that created the fleet signed with the root)", h, s.Security.CAKMSKeyID, want)
				}
				openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(s.Security.ServerCert), "sslserver")
			}

			// One client config (node 1's) against both nodes.
			harness.Start(t, env1, joblet, "server", "--config", filepath.Join(home1, "config", "joblet-config.yml"))
			harness.Start(t, env2, joblet, "server", "--config", filepath.Join(home2, "config", "joblet-config.yml"))
			cfg1 := filepath.Join(home1, "config", "rnx-config.yml")
			addr2 := serverConfig(t, home2).Server
			both := filepath.Join(t.TempDir(), "rnx.yml")
			rc, _ := config.LoadRnx(cfg1)
			n2 := *rc.Nodes["default"]
			n2.Address, n2.IsDefault = addr2.Address+":"+itoa(addr2.Port), false
			rc.Nodes["node2"] = &n2
			b, _ := rc.Marshal()
			os.WriteFile(both, b, 0o600)
			for _, node := range []string{"default", "node2"} {
				harness.Eventually(t, 10*time.Second, "node "+node+" serving", func() error {
					if r := harness.Run(t, harness.Env(), rnx, "--config", both, "--node", node, "info"); r.Code != 0 {
						return errors.New(r.String())
					}
					return nil
				})
			}

			// Renewal through KMS.
			before := serverConfig(t, home2).Security.ServerCert
			harness.MustRun(t, env2, joblet, "certs", "renew")
			after := serverConfig(t, home2).Security.ServerCert
			if after == before {
				t.Fatal("renew did not change the server certificate")
			}
			openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(after), "sslserver")

			// Revocation: a CRL signed through KMS, checked by openssl, and
			// the reader refused by the running node.
			rdr, _ := config.LoadRnx(filepath.Join(home1, "config", "rnx-config-reader.yml"))
			certFile := filepath.Join(t.TempDir(), "reader.pem")
			os.WriteFile(certFile, []byte(rdr.Nodes["default"].Cert), 0o600)
			harness.MustRun(t, env1, joblet, "certs", "revoke", "--cert", certFile)
			crl, err := kmsStore(t).Get(t.Context(), []string{kmsNames.CRL()})
			if err != nil {
				t.Fatal(err)
			}
			opensslCRL(t, vals[kmsNames.CACert()], crl[kmsNames.CRL()])
			harness.Eventually(t, 10*time.Second, "the revoked reader refused", func() error {
				r := harness.Run(t, harness.Env("RNX_CONFIG="+filepath.Join(home1, "config", "rnx-config-reader.yml")), rnx, "info")
				if r.Code == 0 {
					return errors.New("still accepted")
				}
				return nil
			})

			// A client refresh in KMS mode: the CRL and the (KMS) CA arrive,
			// the admin still works. The whole config also holds the revoked
			// reader's entry: refreshing it fails and names the re-issue.
			if r := harness.Run(t, append(append([]string{}, env1...), "RNX_CONFIG="+cfg1), rnx, "config", "refresh"); r.Code == 0 || !strings.Contains(r.Stderr, "certs reissue --role reader") {
				t.Errorf("a refresh of a config holding the revoked reader should fail naming `certs reissue --role reader`: %s", r)
			}
			harness.MustRun(t, append(append([]string{}, env1...), "RNX_CONFIG="+cfg1), rnx, "config", "refresh", "--role", "admin")
			if rc, _ := config.LoadRnx(cfg1); rc.Nodes["default"].CRL == "" {
				t.Error("rnx config refresh did not bring the CRL")
			}
			harness.MustRun(t, harness.Env("RNX_CONFIG="+cfg1), rnx, "info")

			st := harness.Run(t, env1, joblet, "certs", "status")
			if !strings.Contains(st.Stdout, "CA key: AWS KMS key "+arn) {
				t.Errorf("status does not show KMS mode:\n%s", st.Stdout)
			}
			// Nothing on a node holds a CA private key.
			for _, h := range []string{home1, home2} {
				filepath.Walk(h, func(p string, fi os.FileInfo, err error) error {
					if err == nil && !fi.IsDir() {
						data, _ := os.ReadFile(p)
						if bytes.Contains(data, []byte(vals[kmsNames.CACert()][:40])) && strings.Contains(p, "ca-key") {
							t.Errorf("%s holds CA key material", p)
						}
					}
					return nil
				})
				if _, err := os.Stat(filepath.Join(h, "ca")); err == nil {
					t.Errorf("%s has a local CA directory", h)
				}
			}
			reliability.Record(t, "KMS CA", "first node, joining node, serving, renewal and revocation with the CA key in KMS ("+spec+")",
				"no ca-key written or read; kms:Sign "+itoa(first["Sign"])+" times for the first node, "+itoa(join["Sign"])+" for a joining node; every certificate and the CRL verified by openssl")
		})
	}
}

// opensslCRL checks the CRL's signature against the CA with openssl.
func opensslCRL(t *testing.T, caPEM, crlPEM string) {
	t.Helper()
	dir := t.TempDir()
	ca, crl := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "crl.pem")
	os.WriteFile(ca, []byte(caPEM), 0o600)
	os.WriteFile(crl, []byte(crlPEM), 0o600)
	out, err := exec.Command("openssl", "crl", "-in", crl, "-CAfile", ca, "-noout").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "verify OK") {
		t.Fatalf("openssl crl: %v\n%s", err, out)
	}
}

// The two modes do not mix: a node given a KMS key refuses a fleet whose CA
// key is in the store, and a node without one refuses a KMS fleet; each
// names the two modes and writes nothing.
func TestKMSModeMismatchRefused(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	arn := kmsKey(t, "ECC_NIST_P256")

	// The modes matter where the root signs: the operator's flows (here
	// certs init, which creates or completes a fleet) and a first node.
	// A joining node signs with the node-issuing CA and ignores the
	// setting, saying so.
	operator := func(env []string) (harness.Result, string) {
		out := filepath.Join(t.TempDir(), "configs")
		return harness.Run(t, env, joblet, "certs", "init", "--address", "lb.example.com:50051", "--out", out), out
	}
	noConfigs := func(dir string) {
		t.Helper()
		if _, err := os.Stat(dir); err == nil {
			t.Fatalf("a refused init wrote %s", dir)
		}
	}

	// A fleet with its CA key in the store, then the operator given a KMS key.
	_, _, env := smNode(t, moto.URL, "SECRETS_PREFIX=stored")
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	_, _, kenv := smNode(t, moto.URL, "SECRETS_PREFIX=stored", "JOBLET_CA_KMS_KEY_ID="+arn)
	r, out := operator(kenv)
	if r.Code != 1 || !strings.Contains(r.Stderr, "kept in the store as stored/ca-key") || !strings.Contains(r.Stderr, "in AWS KMS") {
		t.Fatalf("KMS key given to a stored-key fleet: %s", r)
	}
	noConfigs(out)
	reliability.Record(t, "KMS CA", "the operator (certs init) given a KMS key for a fleet whose CA key is in the store", "exit 1: "+lastLine(r.Stderr))
	jhome, _, jenv := smNode(t, moto.URL, "SECRETS_PREFIX=stored", "JOBLET_CA_KMS_KEY_ID="+arn)
	if r := harness.MustRun(t, jenv, joblet, "certs", "bootstrap"); !strings.Contains(r.Stdout, "it is not used here") {
		t.Fatalf("a joining node given a KMS key: %s", r)
	}
	if serverConfig(t, jhome).Security.CAKMSKeyID != "" {
		t.Fatal("a joining node recorded a KMS key it does not use")
	}

	// A KMS fleet, then the operator without the KMS key.
	_, _, kenv = smNode(t, moto.URL, "JOBLET_CA_KMS_KEY_ID="+arn)
	harness.MustRun(t, kenv, joblet, "certs", "bootstrap")
	_, _, env = smNode(t, moto.URL)
	r, out = operator(env)
	if r.Code != 1 || !strings.Contains(r.Stderr, "JOBLET_CA_KMS_KEY_ID="+arn) {
		t.Fatalf("the operator without the KMS key in a KMS fleet: %s", r)
	}
	noConfigs(out)
	reliability.Record(t, "KMS CA", "the operator (certs init) without the KMS key, in a fleet whose CA key is in KMS", "exit 1: "+lastLine(r.Stderr))

	// The operator given another KMS key.
	other := kmsKey(t, "ECC_NIST_P256")
	_, _, env = smNode(t, moto.URL, "JOBLET_CA_KMS_KEY_ID="+other)
	r, out = operator(env)
	if r.Code != 1 || !strings.Contains(r.Stderr, "this fleet's CA key is KMS key "+arn) {
		t.Fatalf("another KMS key: %s", r)
	}
	noConfigs(out)

	// A key that cannot sign certificates.
	enc := strings.TrimSpace(awsCLI(t, "kms", "create-key", "--query", "KeyMetadata.Arn", "--output", "text"))
	home, _, env := smNode(t, moto.URL, "SECRETS_PREFIX=enc", "JOBLET_CA_KMS_KEY_ID="+enc)
	r = harness.Run(t, env, joblet, "certs", "bootstrap")
	if r.Code != 1 || !strings.Contains(r.Stderr, "SIGN_VERIFY") {
		t.Fatalf("a symmetric key: %s", r)
	}
	noFiles(t, home)
	reliability.Record(t, "KMS CA", "a KMS key that cannot sign (symmetric, ENCRYPT_DECRYPT)", "exit 1: "+lastLine(r.Stderr))
}

// Concurrent first nodes in KMS mode converge on one CA certificate.
func TestKMSRace(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	arn := kmsKey(t, "ECC_NIST_P256")
	procs, _ := raceSize()
	start := time.Now()
	homes := startTogether(t, procs, func(int) (string, []string) {
		home, _, env := smNode(t, moto.URL, "JOBLET_CA_KMS_KEY_ID="+arn)
		return home, env
	})
	vals := checkKMSStore(t, arn)
	verifyNodes(t, homes, vals[kmsNames.CACert()])
	out := awsCLI(t, "secretsmanager", "list-secret-version-ids", "--secret-id", kmsNames.CACert(), "--query", "length(Versions)", "--output", "text")
	if strings.TrimSpace(out) != "1" {
		t.Fatalf("ca-cert has %s versions, want 1", out)
	}
	reliability.Record(t, "races", itoa(procs)+" bootstraps at once against an empty store, CA key in KMS",
		"all exit 0 in "+time.Since(start).Round(100*time.Millisecond).String()+"; one CA certificate (one version), no ca-key, every pair consistent, every server certificate verified by openssl")
}

// awsStore reads moto directly, not through the binary under test.
func awsStore(url string) secretstore.Store { return awssm.New(smClient(url), "moto", nil) }

// A fleet whose CA key is in the store moves to a KMS CA through the staged
// rotation, under load through HAProxy, with zero failed requests: begin
// with the KMS key, promote (running nodes renew through KMS on their own,
// learning the key from ca-kms-key), finish. A new node then joins in KMS
// mode, and one without the KMS key is refused.
func TestMigrationToKMSWithoutDowntime(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	nodes, lb := rotationFleet(t)
	env := nodes[0].env
	arn := kmsKey(t, "ECC_NIST_P256")
	clientCfg := filepath.Join(t.TempDir(), "rnx-config.yml")
	b, _ := os.ReadFile(filepath.Join(nodes[0].home, "config", "rnx-config.yml"))
	os.WriteFile(clientCfg, b, 0o600)
	harness.Eventually(t, 15*time.Second, "fleet up", func() error { return oneRequest(clientCfg) })
	refresh := func() {
		harness.MustRun(t, harness.Env(append(env, "RNX_CONFIG="+clientCfg)...), rnx, "config", "refresh")
	}
	oldCA := rotationStatus(t, env).Current.Sha256
	loop := startLoop(t, clientCfg, 40*time.Millisecond)

	out := harness.MustRun(t, env, joblet, "certs", "rotate-ca", "begin", "--ca-kms-key-id", arn).Stdout
	if !strings.Contains(out, "phase begun") || !strings.Contains(out, "pending CA") || !strings.Contains(out, "key: AWS KMS key "+arn) {
		t.Fatalf("begin:\n%s", out)
	}
	refresh()
	time.Sleep(3 * time.Second) // every node trusts both CAs
	out = harness.MustRun(t, env, joblet, "certs", "rotate-ca", "promote").Stdout
	if !strings.Contains(out, "phase promoted") || !strings.Contains(out, "current CA") || !strings.Contains(out, "key: AWS KMS key "+arn) {
		t.Fatalf("promote:\n%s", out)
	}
	newCA := rotationStatus(t, env).Current.Sha256
	harness.Eventually(t, 20*time.Second, "every node renewed through KMS", func() error {
		for i, n := range nodes {
			_, issuer, _, err := n.info(t, clientCfg, lb)
			if err != nil {
				return err
			}
			if issuer != newCA {
				return errors.New("node " + itoa(i+1) + " still serves a certificate from the old CA")
			}
		}
		return nil
	})
	refresh()
	out = harness.MustRun(t, env, joblet, "certs", "rotate-ca", "finish").Stdout
	if !strings.Contains(out, "phase stable") {
		t.Fatalf("finish:\n%s", out)
	}
	time.Sleep(3 * time.Second)
	refresh()
	time.Sleep(time.Second)
	total, failed, rate, errs := loop.finish()
	t.Logf("migration to KMS under load: %d requests at %.1f/s, %d failed", total, rate, failed)
	for _, e := range errs {
		t.Log(e)
	}
	if failed != 0 || total == 0 {
		t.Fatalf("%d of %d requests failed during the migration", failed, total)
	}
	s := rotationStatus(t, env)
	if s.Current.Sha256 == oldCA || len(s.Trusted) != 1 {
		t.Fatalf("end state %+v", s)
	}
	vals := readStore(t, "joblet")
	ca, _ := pki.ParseCert([]byte(vals[kmsNames.CACert()]))
	if pub := kmsPublicKey(t, arn).(interface{ Equal(x crypto.PublicKey) bool }); !pub.Equal(ca.PublicKey) {
		t.Fatal("the current CA is not the KMS key's")
	}
	for i, n := range nodes {
		cfg := serverConfig(t, n.home)
		// Nodes renewed from the node-issuing CA, re-signed by the KMS
		// root at promote: they never needed the KMS key.
		if _, chain, _ := pki.ParseChain([]byte(cfg.Security.ServerCert)); len(chain) == 0 || chain[0].CheckSignatureFrom(ca) != nil {
			t.Errorf("node %d does not serve from a node-issuing CA under the KMS root", i+1)
		}
		openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(cfg.Security.ServerCert), "sslserver")
	}
	for _, r := range pki.Roles {
		openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(vals[kmsNames.ClientCert(r)]), "sslclient")
	}
	// Joining after the migration: with the KMS key, and without it.
	home, _, kenv := smNode(t, moto.URL, "JOBLET_CA_KMS_KEY_ID="+arn)
	harness.MustRun(t, kenv, joblet, "certs", "bootstrap")
	openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(serverConfig(t, home).Security.ServerCert), "sslserver")
	home, _, penv := smNode(t, moto.URL)
	harness.MustRun(t, penv, joblet, "certs", "bootstrap")
	openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(serverConfig(t, home).Security.ServerCert), "sslserver")
	reliability.Record(t, "rotation", "move the CA key from the store to AWS KMS (rotate-ca begin --ca-kms-key-id, promote, finish) on 3 nodes behind HAProxy under load",
		fmt.Sprintf("%d requests at %.0f/s, %d failed; running nodes renewed from the node-issuing CA re-signed by the KMS root; new nodes join with or without the KMS key (they need none)", total, rate, failed))
}

// KMS failing: every kms:Sign answered 503 (after the SDK's retries) ends
// the bootstrap with the cause named and no local file; what the first node
// stored before (its claim on ca-kms-key) is completed by the next run once
// KMS answers again, still one CA.
func TestKMSUnavailable(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	arn := kmsKey(t, "ECC_NIST_P256")
	proxy := harness.StartAWSProxy(t, moto.URL)
	proxy.OnCall(func(action string, _ int) harness.Verdict {
		if action == "Sign" {
			return harness.Unavailable
		}
		return harness.Forward
	}, nil)
	home, _, env := smNode(t, proxy.URL, "JOBLET_CA_KMS_KEY_ID="+arn, "JOBLET_TIMEOUT=30s")
	start := time.Now()
	r := harness.Run(t, env, joblet, "certs", "bootstrap")
	took := time.Since(start)
	if r.Code != 1 || !strings.Contains(r.Stderr, "kms:Sign on KMS key "+arn+": KMS answered HTTP 503 after retries") {
		t.Fatalf("KMS unavailable: %s", r)
	}
	noFiles(t, home)
	signs := harness.Count(proxy.Calls())["Sign"]
	vals := readStore(t, "joblet")
	if _, ok := vals[kmsNames.CACert()]; ok {
		t.Fatal("a CA certificate was stored although KMS never signed")
	}
	// KMS is back: the same node completes the fleet.
	proxy.OnCall(nil, nil)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	stored := checkKMSStore(t, arn)
	openssl.Verify(t, []byte(stored[kmsNames.CACert()]), []byte(serverConfig(t, home).Security.ServerCert), "sslserver")
	reliability.Record(t, "KMS CA", "first node with every kms:Sign answered HTTP 503",
		fmt.Sprintf("exit 1 after %v and %d Sign attempts: %s; no local file, no CA certificate stored; once KMS answers, a re-run completes the fleet (one CA)", took.Round(100*time.Millisecond), signs, lastLine(r.Stderr)))
}
