package test

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// loot is what an attacker who took a joined node has: every private key
// and certificate on its disk and in every secret its node policy lets it
// read.
type loot struct {
	keys  map[string]crypto.Signer     // where found -> key
	certs map[string]*x509.Certificate // where found -> certificate
	read  []string                     // the secrets it could read
}

func (l *loot) add(where, text string) {
	rest := []byte(text)
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return
		}
		switch {
		case strings.Contains(b.Type, "PRIVATE KEY"):
			if k, err := pki.ParseKey(pem.EncodeToMemory(b)); err == nil {
				l.keys[fmt.Sprintf("%s #%d", where, len(l.keys))] = k
			}
		case b.Type == "CERTIFICATE":
			if c, err := x509.ParseCertificate(b.Bytes); err == nil {
				l.certs[fmt.Sprintf("%s #%d", where, len(l.certs))] = c
			}
		}
	}
}

// plunder collects the loot of a node: its files, and each secret of the
// fleet that the node policy allows reading, read with the node's own
// credentials (moto checks the actions; allows checks the resources).
func plunder(t *testing.T, home string, policy *certs.Policy, env []string) *loot {
	t.Helper()
	l := &loot{keys: map[string]crypto.Signer{}, certs: map[string]*x509.Certificate{}}
	filepath.Walk(home, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return nil
		}
		b, _ := os.ReadFile(p)
		l.add(p, string(b))
		// The configs hold their PEM indented in YAML.
		if srv, err := config.LoadServer(p); err == nil {
			l.add(p, srv.Security.ServerKey+srv.Security.ServerCert+srv.Security.CACert)
		}
		if rnx, err := config.LoadRnx(p); err == nil {
			for _, n := range rnx.Nodes {
				l.add(p, n.Key+n.Cert+n.CA)
			}
		}
		return nil
	})
	n := certs.Names{Prefix: "joblet"}
	for _, name := range append(n.All(), n.CAKMSKey(), n.Bundle(), n.CRL()) {
		if !allows(policy, "GetSecretValue", name) {
			continue
		}
		r := harness.Run(t, env, "aws", "secretsmanager", "get-secret-value", "--secret-id", name, "--query", "SecretString", "--output", "text")
		if r.Code == 0 {
			l.read = append(l.read, name)
			l.add(name, r.Stdout)
		}
	}
	return l
}

// forgeries signs an OU=admin client certificate with every key in the
// loot: as the CA whose certificate matches the key (the chain up to it
// included), or, for a key of no CA, as an impostor of the root (the
// root's name, the stolen key).
func forgeries(t *testing.T, l *loot, root *x509.Certificate) map[string][2]string {
	t.Helper()
	out := map[string][2]string{}
	clientKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	clientKeyPEM, _ := pki.EncodeKey(clientKey)
	for where, k := range l.keys {
		issuer := &x509.Certificate{Subject: root.Subject, SubjectKeyId: root.SubjectKeyId, IsCA: true, BasicConstraintsValid: true,
			NotBefore: root.NotBefore, NotAfter: root.NotAfter, KeyUsage: x509.KeyUsageCertSign, PublicKey: k.Public()}
		chain := []*x509.Certificate{}
		for _, c := range l.certs {
			if c.IsCA && pki.MatchesKey(c, k) == nil {
				issuer = c
				if !c.Equal(root) {
					chain = append(chain, c)
				}
				break
			}
		}
		ca := &pki.CA{Cert: issuer, Key: k}
		is, err := ca.IssueClient(clientKey.Public(), pki.Admin, time.Now(), 720*time.Hour)
		if err != nil {
			t.Fatalf("forge with %s: %v", where, err)
		}
		out[where+" (as "+issuer.Subject.CommonName+")"] = [2]string{string(pki.EncodeCerts(append([]*x509.Certificate{is.Cert}, chain...)...)), string(clientKeyPEM)}
	}
	return out
}

// A node holding only the node policy joins, serves and renews; its files
// hold one private key; and with everything it has, no key signs a client
// certificate that a node (or openssl) accepts. In KMS mode the root's key
// is in KMS, and the node's credentials cannot sign with it either.
func TestStolenNodeCannotBecomeAdmin(t *testing.T) {
	t.Parallel()
	for _, kms := range []bool{false, true} {
		name := "store root key"
		if kms {
			name = "KMS root key"
		}
		t.Run(name, func(t *testing.T) { stolenNode(t, kms) })
	}
}

func stolenNode(t *testing.T, kms bool) {
	// IAM is enforced after the setup calls: two users (3 calls each),
	// and the KMS key.
	setup := 6
	if kms {
		setup++
	}
	m, err := harness.StartMoto("INITIAL_NO_AUTH_ACTION_COUNT=" + itoa(setup))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	joblet, rnx := harness.Bins(t)
	var extra, policyArgs []string
	var rootARN string
	if kms {
		env := harness.Env(harness.AWSEnv(m.URL)...)
		rootARN = strings.TrimSpace(harness.MustRun(t, env, "aws", "kms", "create-key", "--key-spec", "ECC_NIST_P256", "--key-usage", "SIGN_VERIFY",
			"--query", "KeyMetadata.Arn", "--output", "text").Stdout)
		extra, policyArgs = []string{"JOBLET_CA_KMS_KEY_ID=" + rootARN}, []string{"--ca-kms-key-id", rootARN}
	}
	policies, creds := map[string]*certs.Policy{}, map[string][]string{}
	for _, f := range []string{"bootstrap", "node"} {
		policies[f] = policyFor(t, f, policyArgs...)
		id, key := iamUserPolicy(t, m.URL, f, actionsOnly(policies[f]))
		creds[f] = []string{"AWS_ACCESS_KEY_ID=" + id, "AWS_SECRET_ACCESS_KEY=" + key}
	}
	for _, secret := range []string{"joblet/ca-key", "joblet/client-key", "joblet/client-key-reader"} {
		if allows(policies["node"], "GetSecretValue", secret) {
			t.Errorf("the node policy allows reading %s", secret)
		}
	}
	if kms && allowsKMS(policies["node"], "kms:Sign", rootARN) {
		t.Error("the node policy allows kms:Sign on the root's key")
	}
	proxy := harness.StartAWSProxy(t, m.URL)
	firstHome, _, env := smNode(t, proxy.URL, append(creds["bootstrap"], extra...)...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	proxy.Recorded()

	// The joining node holds the node policy only (and, as an upgraded
	// node's user data still may, the KMS key id: it needs nothing of it).
	home, port, env := smNode(t, proxy.URL, append(creds["node"], extra...)...)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	harness.MustRun(t, env, joblet, "certs", "renew", "--config", cfgPath)
	harness.MustRun(t, env, joblet, "certs", "status")
	checkFlow(t, "node", policies["node"], proxy.Recorded())
	harness.Start(t, env, joblet, "server", "--config", cfgPath)
	addr := fmt.Sprintf("127.0.0.1:%d", port)

	// A real admin config (from the node that created the fleet) works:
	// the refusals below are about the forgeries, not the node.
	admin, err := config.LoadRnx(filepath.Join(firstHome, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	admin.Nodes["default"].Address = addr
	good := writeRnx(t, oneNode(admin.Nodes["default"]))
	harness.Eventually(t, 10*time.Second, "the joined node serving the real admin", func() error {
		if r := harness.Run(t, harness.Env(), rnx, "--config", good, "info"); r.Code != 0 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	root, _ := pki.ParseCert([]byte(strings.SplitAfter(admin.Nodes["default"].CA, "-----END CERTIFICATE-----\n")[0]))

	l := plunder(t, home, policies["node"], harness.Env(append(harness.AWSEnv(m.URL), creds["node"]...)...))
	if len(l.keys) != 2 { // the node's own server key, the node-issuing key
		var where []string
		for w := range l.keys {
			where = append(where, w)
		}
		t.Errorf("a stolen node yields %d private keys: %v", len(l.keys), where)
	}
	keys, _ := privateKeysIn(t, home)
	if keys != 1 {
		t.Errorf("the joined node's files hold %d private keys, want 1", keys)
	}
	forged := forgeries(t, l, root)
	for what, pair := range forged {
		node := &config.Node{Address: addr, Cert: pair[0], Key: pair[1], CA: admin.Nodes["default"].CA}
		if r := harness.Run(t, harness.Env(), rnx, "--config", writeRnx(t, oneNode(node)), "info"); r.Code == 0 {
			t.Errorf("the node accepted an admin certificate forged with %s:\n%s", what, r.Stdout)
		}
		out := openssl.VerifyFails(t, pki.EncodeCert(root), []byte(pair[0]), "sslclient")
		t.Logf("forged with %s: refused by the node; openssl: %s", what, lastLine(out))
	}
	if kms {
		// The root's key in KMS, with the node's credentials.
		digest := strings.Repeat("A", 43) + "="
		r := harness.Run(t, harness.Env(append(harness.AWSEnv(m.URL), creds["node"]...)...), "aws", "kms", "sign", "--key-id", rootARN,
			"--message", digest, "--message-type", "DIGEST", "--signing-algorithm", "ECDSA_SHA_256")
		if r.Code == 0 {
			t.Error("the node's credentials signed with the root's KMS key")
		}
		t.Logf("kms:Sign on the root with the node's credentials: %s", lastLine(r.Stderr))
	}
	reliability.Record(t, "security", fmt.Sprintf("a stolen joined node (%s): %d secrets readable under the node policy, %d private keys found, an OU=admin certificate forged with each", map[bool]string{false: "root key in the store", true: "root key in KMS"}[kms], len(l.read), len(l.keys)),
		fmt.Sprintf("all %d forgeries refused by the node and by openssl -purpose sslclient; the node's files hold 1 private key", len(forged)))
}

// oneNode is an rnx config of one default node.
func oneNode(n *config.Node) *config.Rnx {
	n.IsDefault = true
	return &config.Rnx{Version: config.RnxVersion, Nodes: map[string]*config.Node{"default": n}}
}

func privateKeysIn(t *testing.T, dir string) (int, []string) {
	t.Helper()
	n, files := 0, []string(nil)
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			b, _ := os.ReadFile(p)
			if c := strings.Count(string(b), "-----BEGIN PRIVATE KEY-----") + strings.Count(string(b), "-----BEGIN EC PRIVATE KEY-----"); c > 0 {
				n += c
				files = append(files, p)
			}
		}
		return nil
	})
	return n, files
}

// A fleet made before the node-issuing CA (its stored secrets, pathlen 0
// root and all: internal/certs/testdata/legacy) moves to split issuing
// power under traffic through HAProxy: `certs node-ca` re-issues the root
// (a config from before still works), clients refresh once, `certs
// node-ca` adds the node-issuing CA, and nodes renew from it, with no
// failed request and no restart.
func TestMoveToNodeCAUnderTraffic(t *testing.T) {
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	st := awsStore(moto.URL)
	n := certs.Names{Prefix: "joblet"}
	files, _ := filepath.Glob("../internal/certs/testdata/legacy/*.pem")
	if len(files) != 10 {
		t.Fatalf("%d legacy secrets", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		name := "joblet/" + strings.TrimSuffix(filepath.Base(f), ".pem")
		if err := st.Create(context.Background(), n.Secret(name, string(b))); err != nil {
			t.Fatal(err)
		}
	}
	nodes, lb := rotationFleet(t)
	env := nodes[0].env
	b, _ := os.ReadFile(filepath.Join(nodes[0].home, "config", "rnx-config.yml"))
	if _, chain, _ := pki.ParseChain([]byte(serverConfig(t, nodes[0].home).Security.ServerCert)); len(chain) != 0 {
		t.Fatal("a node of the legacy fleet serves a chain before the move")
	}
	refreshed := filepath.Join(t.TempDir(), "rnx-config.yml")
	untouched := filepath.Join(t.TempDir(), "rnx-config.yml")
	os.WriteFile(refreshed, b, 0o600)
	os.WriteFile(untouched, b, 0o600)
	harness.Eventually(t, 15*time.Second, "fleet up", func() error { return oneRequest(refreshed) })
	pids := map[int]bool{}
	for _, nd := range nodes {
		pids[nd.proc.Cmd.Process.Pid] = true
	}
	loop := startLoop(t, refreshed, 40*time.Millisecond)
	old := startLoop(t, untouched, 40*time.Millisecond)

	out := harness.MustRun(t, env, joblet, "certs", "node-ca").Stdout
	if !strings.Contains(out, "step 1 of 2") {
		t.Fatalf("node-ca, first run:\n%s", out)
	}
	time.Sleep(3 * time.Second) // nodes take the re-issued root (1s refresh)
	harness.MustRun(t, harness.Env(append(env, "RNX_CONFIG="+refreshed)...), rnx, "config", "refresh")
	oldTotal, oldFailed, _, oldErrs := old.finish()

	out = harness.MustRun(t, env, joblet, "certs", "node-ca").Stdout
	if !strings.Contains(out, "step 2 of 2") {
		t.Fatalf("node-ca, second run:\n%s", out)
	}
	harness.Eventually(t, 20*time.Second, "every node serving from the node-issuing CA", func() error {
		for i, nd := range nodes {
			if _, chain, _ := pki.ParseChain([]byte(serverConfig(t, nd.home).Security.ServerCert)); len(chain) != 1 {
				return fmt.Errorf("node %d not yet", i+1)
			}
		}
		return nil
	})
	time.Sleep(2 * time.Second) // the renewed certificates in service
	total, failed, rate, errs := loop.finish()
	t.Logf("move under load: %d requests at %.1f/s through haproxy, %d failed; a config from before the move, until the second step: %d requests, %d failed", total, rate, failed, oldTotal, oldFailed)
	for _, e := range append(errs, oldErrs...) {
		t.Log(e)
	}
	if failed != 0 || oldFailed != 0 || rate < 20 {
		t.Fatalf("%d of %d requests failed (%.1f/s), %d of %d with the untouched config: want 0", failed, total, rate, oldFailed, oldTotal)
	}
	for _, nd := range nodes {
		if nd.proc.Cmd.ProcessState != nil || !pids[nd.proc.Cmd.Process.Pid] {
			t.Fatal("a node restarted or exited")
		}
	}
	// What the docs say: a config never refreshed does not verify a node
	// serving from the node-issuing CA under the old (pathlen 0) root.
	r := harness.Run(t, harness.Env(), rnx, "--config", directConfig(t, untouched, lb, nodes[1].addr), "info")
	if r.Code == 0 {
		t.Fatal("a config trusting the pathlen 0 root verified a chain through the node-issuing CA")
	}
	if out := harness.MustRun(t, env, joblet, "certs", "node-ca").Stdout; !strings.Contains(out, "nothing to do") {
		t.Fatalf("node-ca, third run:\n%s", out)
	}
	reliability.Record(t, "split issuing power", "a fleet from before the node-issuing CA moved with `certs node-ca` (twice) on 3 nodes behind HAProxy under load, clients refreshed once between the steps",
		fmt.Sprintf("%d requests at %.0f/s, %d failed; a config never refreshed kept working through step 1 (%d requests, %d failed) and is refused after step 2", total, rate, failed, oldTotal, oldFailed))
}
