package test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/awspeople"
	"github.com/ehsaniara/joblet/test/harness"
)

// peopleMoto is a second moto, with request signatures checked, that holds
// the people's IAM identities and answers their STS calls (the fleet's
// store stays in the package's moto). Started by the first test that
// needs it; TestMain stops it.
var (
	peopleMoto   *harness.Moto
	peopleMotoMu sync.Mutex // tests that run in parallel start it once
)

func people(t *testing.T) (*harness.Moto, *awspeople.People) {
	t.Helper()
	peopleMotoMu.Lock()
	defer peopleMotoMu.Unlock()
	if peopleMoto == nil {
		m, err := harness.StartMoto("INITIAL_NO_AUTH_ACTION_COUNT=" + strconv.Itoa(awspeople.SetupCalls))
		if err != nil {
			t.Fatal(err)
		}
		peopleMoto = m
	}
	return peopleMoto, awspeople.Make(t, peopleMoto.URL)
}

// loginFleet is a fleet in moto with one node, a user-issuing CA, a
// signed identity policy the node holds, and an issuer serving HTTPS on
// 127.0.0.1: what `rnx login` needs. It returns the node's environment, an
// rnx config for people (no certificate of its own), and the issuer's URL
// and CA file.
type loginFleet struct {
	home, peopleCfg, issuerURL, issuerCA string
	env                                  []string
	joblet, rnx                          string
	issuer                               *harness.Proc
	// issuerAWS records the issuer's store calls (its IAM policy's test).
	issuerAWS *harness.AWSProxy
}

const loginPolicy = `{"rules":[
 {"user":"arn:aws:iam::123456789012:user/alice","grant":"developer"},
 {"user":"arn:aws:iam::123456789012:user/bob","grant":"reader"},
 {"role":"arn:aws:iam::123456789012:role/people/admins","session":"bob-*","grant":"admin"}]}`

func startLoginFleet(t *testing.T) *loginFleet {
	t.Helper()
	pm, _ := people(t)
	moto := resetMoto(t)
	f := &loginFleet{}
	f.joblet, f.rnx = harness.Bins(t)
	f.home, _, f.env = smNode(t, moto.URL)
	harness.MustRun(t, f.env, f.joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	harness.Start(t, f.env, f.joblet, "server", "--config", filepath.Join(f.home, "config", "joblet-config.yml"))
	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(loginPolicy), 0o600)
	harness.MustRun(t, f.env, f.joblet, "certs", "identity-policy", "sign", "--file", policy)
	if out := harness.MustRun(t, f.env, f.joblet, "certs", "user-ca"); !strings.Contains(out.Stdout, "user-issuing CA serial") {
		t.Fatalf("user-ca: %s", out)
	}
	// The issuer's HTTPS certificate, from a CA of the test's own (an
	// operator's PKI): rnx trusts it through login.issuerCA.
	dir := t.TempDir()
	tlsKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	tlsCA, err := pki.NewCA(tlsKey, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := &pki.CA{Cert: tlsCA, Key: tlsKey}
	leafKey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	leaf, err := ca.IssueServer(leafKey.Public(), pki.SANs{IPs: []net.IP{net.ParseIP("127.0.0.1")}}, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	leafKeyPEM, _ := pki.EncodeKey(leafKey)
	f.issuerCA = filepath.Join(dir, "issuer-ca.pem")
	os.WriteFile(f.issuerCA, pki.EncodeCert(tlsCA), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.pem"), append(pki.EncodeCert(leaf.Cert), pki.EncodeCert(tlsCA)...), 0o600)
	os.WriteFile(filepath.Join(dir, "tls.key"), leafKeyPEM, 0o600)
	iport := harness.FreePort(t)
	f.issuerURL = fmt.Sprintf("https://127.0.0.1:%d", iport)
	// The issuer reaches STS where the SDK's settings say: the people's
	// moto (AWS_ENDPOINT_URL_STS), never a host a caller names.
	f.issuerAWS = harness.StartAWSProxy(t, moto.URL)
	f.issuer = harness.Start(t, append(f.env[:len(f.env):len(f.env)], "AWS_ENDPOINT_URL_SECRETS_MANAGER="+f.issuerAWS.URL, "AWS_ENDPOINT_URL_STS="+pm.URL), f.joblet, "issuer",
		"--listen", fmt.Sprintf("127.0.0.1:%d", iport), "--tls-cert", filepath.Join(dir, "tls.pem"), "--tls-key", filepath.Join(dir, "tls.key"), "--reread", "0s")
	harness.Eventually(t, 20*time.Second, "the issuer serving", func() error {
		c, err := net.Dial("tcp", strings.TrimPrefix(f.issuerURL, "https://"))
		if err != nil {
			return err
		}
		return c.Close()
	})
	harness.Eventually(t, 20*time.Second, "the node holding the identity policy", func() error {
		if serverConfig(t, f.home).Security.IdentityPolicy == "" {
			return errors.New("not yet")
		}
		return nil
	})
	// A config for people, as a person makes it: the node's address, the
	// fleet's trust from the issuer checked against the root's
	// fingerprint, no certificate.
	rc, err := config.LoadRnx(filepath.Join(f.home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	_, node, _ := rc.Select("")
	root, _ := pki.ParseCert([]byte(readStore(t, "joblet")["joblet/ca-cert"]))
	f.peopleCfg = filepath.Join(t.TempDir(), "rnx-config.yml")
	out := harness.MustRun(t, harness.Env(), f.rnx, "--config", f.peopleCfg, "config", "init", "--issuer", f.issuerURL, "--issuer-ca", f.issuerCA,
		"--address", node.Address, "--ca-fingerprint", pki.PinOf(root).String())
	if !strings.Contains(out.Stdout, "next: rnx login") {
		t.Fatalf("config init --issuer: %s", out)
	}
	other, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	otherRoot, _ := pki.NewCA(other, time.Now(), time.Hour)
	if r := harness.Run(t, harness.Env(), f.rnx, "--config", filepath.Join(t.TempDir(), "x.yml"), "config", "init", "--issuer", f.issuerURL, "--issuer-ca", f.issuerCA,
		"--address", node.Address, "--ca-fingerprint", pki.PinOf(otherRoot).String()); r.Code == 0 || !strings.Contains(r.Stderr, "no root with fingerprint") {
		t.Errorf("config init --issuer with another root's fingerprint: %s", r)
	}
	return f
}

// configFor is a copy of the people's config for one person (each keeps
// their login next to their config).
func (f *loginFleet) configFor(t *testing.T) string {
	b, err := os.ReadFile(f.peopleCfg)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "rnx-config.yml")
	os.WriteFile(p, b, 0o600)
	return p
}

// Issue 26 end to end, against moto's IAM and STS with signatures checked:
// alice, bob and bob's session of the admins role each `rnx login` with
// their own AWS credentials, get a certificate naming them with the role
// the root-signed policy gives them, and the node accepts it for that role
// and no other; carol, whom the policy does not name, gets nothing, told
// why; a people's config without a login says to log in.
func TestLoginThroughTheIssuer(t *testing.T) {
	t.Parallel()
	f := startLoginFleet(t)
	_, pp := people(t)
	for _, c := range []struct {
		who, person string
		aws         []string
		role        pki.Role
		runs        bool // the role may start jobs
	}{
		{"alice", "arn:aws:iam::123456789012:user/alice", awspeople.Env(pp.Alice), pki.Developer, true},
		{"bob", "arn:aws:iam::123456789012:user/bob", awspeople.Env(pp.Bob), pki.Reader, false},
		{"bob as admins", "arn:aws:iam::123456789012:role/admins#bob-laptop", awspeople.Env(pp.BobAsAdmin), pki.Admin, true},
	} {
		cfg := f.configFor(t)
		env := harness.Env(c.aws...)
		// Before logging in: the config has no certificate; rnx says so.
		if r := harness.Run(t, env, f.rnx, "--config", cfg, "job", "list"); r.Code == 0 || !strings.Contains(r.Stderr, "rnx login") {
			t.Errorf("%s before login: %s", c.who, r)
		}
		r := harness.Run(t, env, f.rnx, "--config", cfg, "login", "--issuer-ca", f.issuerCA)
		if r.Code != 0 || !strings.Contains(r.Stdout, "logged in as "+c.person+" ("+string(c.role)+")") {
			t.Fatalf("%s: rnx login: %s", c.who, r)
		}
		if fi, err := os.Stat(strings.TrimSuffix(cfg, ".yml") + ".login.pem"); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: the login certificate beside the config: %v %v", c.who, fi, err)
		}
		if r := harness.Run(t, env, f.rnx, "--config", cfg, "whoami"); r.Code != 0 || !strings.Contains(r.Stdout, c.person+" as "+string(c.role)) {
			t.Errorf("%s: whoami: %s", c.who, r)
		}
		if r := harness.Run(t, env, f.rnx, "--config", cfg, "job", "list"); r.Code != 0 {
			t.Errorf("%s: job list with the login certificate: %s", c.who, r)
		}
		run := harness.Run(t, env, f.rnx, "--config", cfg, "job", "run", "true")
		if (run.Code == 0) != c.runs {
			t.Errorf("%s (%s): job run: %s", c.who, c.role, run)
		}
	}
	// Who ran each job, as the node recorded it: the person from the
	// login certificate beside the role.
	var jobs []struct {
		StartedBy       string `json:"startedBy"`
		StartedByPerson string `json:"startedByPerson"`
	}
	out := harness.MustRun(t, harness.Env(), f.rnx, "--config", filepath.Join(f.home, "config", "rnx-config.yml"), "job", "list", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &jobs); err != nil {
		t.Fatalf("job list --json: %v\n%s", err, out)
	}
	ran := map[string]string{}
	for _, j := range jobs {
		ran[j.StartedByPerson] = j.StartedBy
	}
	if ran["arn:aws:iam::123456789012:user/alice"] != "developer" || ran["arn:aws:iam::123456789012:role/admins#bob-laptop"] != "admin" || len(ran) != 2 {
		t.Errorf("job list does not say who ran each job: %v\n%s", ran, out)
	}

	// Carol: a real IAM user, signed correctly, whom the policy does not
	// name.
	cfg := f.configFor(t)
	r := harness.Run(t, harness.Env(awspeople.Env(pp.Carol)...), f.rnx, "--config", cfg, "login", "--issuer-ca", f.issuerCA)
	if r.Code == 0 || !strings.Contains(r.Stderr, "identity policy") || !strings.Contains(r.Stderr, "carol") {
		t.Errorf("carol: %s", r)
	}
	if _, err := os.Stat(strings.TrimSuffix(cfg, ".yml") + ".login.pem"); err == nil {
		t.Error("carol: a login certificate was written")
	}
	// Status tells the operator about people: the policy, the
	// user-issuing CA, and the four shared role certificates still
	// accepted beside people's own.
	st := harness.Run(t, f.env, f.joblet, "certs", "status", "--json")
	var rep struct {
		People *struct {
			Version     uint64     `json:"identityPolicyVersion"`
			SharedRoles []pki.Role `json:"sharedRoles"`
			UserCA      string     `json:"userCA"`
		} `json:"people"`
	}
	if err := json.Unmarshal([]byte(st.Stdout), &rep); err != nil || rep.People == nil || rep.People.Version == 0 || rep.People.UserCA == "" || len(rep.People.SharedRoles) != 4 {
		t.Errorf("status says nothing right about people: %+v %v\n%s", rep.People, err, st)
	}
	if st := harness.Run(t, f.env, f.joblet, "certs", "status"); !strings.Contains(st.Stdout, "shared role certificates nodes accept: 4 (admin, maintainer, developer, reader)") {
		t.Errorf("status text: %s", st)
	}

	// Everything the issuer read is inside `iam-policy --for issuer`.
	checkFlow(t, "issuer", policyFor(t, "issuer"), f.issuerAWS.Recorded())
	if !strings.Contains(f.issuer.Output(), "login refused") || !strings.Contains(f.issuer.Output(), "person=arn:aws:iam::123456789012:user/alice") {
		t.Errorf("the issuer's log names neither the logins nor the refusal:\n%s", f.issuer.Output())
	}
}

// What a stolen node gives toward people: its IAM policy reads no
// user-issuing CA; nothing it holds (the node-issuing CA's key, its own
// server key) signs a person's certificate a node accepts, an identity
// policy a node or the issuer takes, or a user-issuing CA the issuer uses.
func TestLoginStolenNodeSignsNoPerson(t *testing.T) {
	t.Parallel()
	f := startLoginFleet(t)
	_, pp := people(t)
	node, issuerPol := policyFor(t, "node"), policyFor(t, "issuer")
	if allows(node, "GetSecretValue", "joblet/user-ca") {
		t.Error("the node policy reads the user-issuing CA")
	}
	if !allows(issuerPol, "GetSecretValue", "joblet/user-ca") {
		t.Error("the issuer policy does not read the user-issuing CA")
	}
	for _, secret := range []string{"joblet/ca-key", "joblet/node-ca-key", "joblet/client-key", "joblet/client-key-developer"} {
		if allows(issuerPol, "GetSecretValue", secret) {
			t.Errorf("the issuer policy reads %s", secret)
		}
	}
	for _, action := range []string{"PutSecretValue", "CreateSecret", "UpdateSecretVersionStage"} {
		if allows(issuerPol, action, "joblet/user-ca") || allows(issuerPol, action, "joblet/identity-policy") {
			t.Errorf("the issuer policy allows %s", action)
		}
	}

	// Everything a node reads, as the thief has it.
	vals := readStore(t, "joblet")
	nodeCA, _ := pki.ParseCert([]byte(vals["joblet/node-ca-cert"]))
	nodeKey, err := pki.ParseKey([]byte(vals["joblet/node-ca-key"]))
	if err != nil {
		t.Fatal(err)
	}
	thief := &pki.CA{Cert: nodeCA, Key: nodeKey}
	serverKey, err := pki.ParseKey([]byte(serverConfig(t, f.home).Security.ServerKey))
	if err != nil {
		t.Fatal(err)
	}
	serverCert, err := pki.ParseLeaf([]byte(serverConfig(t, f.home).Security.ServerCert))
	if err != nil {
		t.Fatal(err)
	}

	// 1. A person's certificate for alice as admin, signed by the
	// node-issuing CA, then by the node's own server key.
	presented := 0
	for what, signer := range map[string]*pki.CA{"the node-issuing CA": thief, "the node's server key": {Cert: serverCert, Key: serverKey}} {
		key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		is, err := signer.IssuePerson(key.Public(), pki.Person{ARN: "arn:aws:iam::123456789012:user/alice", Role: pki.Admin}, time.Now(), time.Hour)
		if err != nil {
			t.Logf("%s: pki refuses to sign a person (%v)", what, err)
			continue
		}
		presented++
		rc, _ := config.LoadRnx(f.peopleCfg)
		keyPEM, _ := pki.EncodeKey(key)
		for _, n := range rc.Nodes {
			n.Cert, n.Key = string(pki.EncodeCert(is.Cert))+string(pki.EncodeCert(signer.Cert)), string(keyPEM)
		}
		b, _ := rc.Marshal()
		p := filepath.Join(t.TempDir(), "forged.yml")
		os.WriteFile(p, b, 0o600)
		if r := harness.Run(t, harness.Env(), f.rnx, "--config", p, "job", "list"); r.Code == 0 {
			t.Errorf("a person's certificate signed by %s was accepted: %s", what, r)
		}
	}
	if presented == 0 {
		t.Fatal("no forged person's certificate was presented to the node")
	}

	// 2. An identity policy signed by the node-issuing CA's key giving
	// carol admin, written over the real one: the node keeps its policy,
	// the issuer gives carol nothing.
	before := serverConfig(t, f.home).Security.IdentityPolicy
	forged := strings.Replace(loginPolicy, `"grant":"reader"}`, `"grant":"reader"},{"user":"arn:aws:iam::123456789012:user/carol","grant":"admin"}`, 1)
	var pol idpolicy.Policy
	if err := json.Unmarshal([]byte(forged), &pol); err != nil {
		t.Fatal(err)
	}
	pol.Fleet, pol.Version, pol.Issued, pol.Expires = "joblet", uint64(time.Now().Unix()+100), time.Now(), time.Now().Add(time.Hour)
	data, err := idpolicy.Sign(context.Background(), &pol, thief)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, "joblet/identity-policy", string(data))
	time.Sleep(3 * time.Second) // three of the node's refreshes
	if after := serverConfig(t, f.home).Security.IdentityPolicy; after != before {
		t.Error("the node took an identity policy the node-issuing CA signed")
	}
	cfg := f.configFor(t)
	r := harness.Run(t, harness.Env(awspeople.Env(pp.Carol)...), f.rnx, "--config", cfg, "login", "--issuer-ca", f.issuerCA, "--issuer", f.issuerURL)
	if r.Code == 0 {
		t.Errorf("carol logged in under a policy the node-issuing CA signed: %s", r)
	}

	// 3. A user-issuing CA made from the node-issuing CA, written over the
	// real one (the operator's policy signed again first): the issuer
	// refuses to sign with it.
	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(loginPolicy), 0o600)
	harness.MustRun(t, f.env, f.joblet, "certs", "identity-policy", "sign", "--file", policy)
	ukey, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	if uca, err := thief.IssueUserCA(ukey.Public(), time.Now(), time.Hour); err != nil {
		t.Errorf("forge a user-issuing CA: %v", err)
	} else {
		keyPEM, _ := pki.EncodeKey(ukey)
		putSecret(t, "joblet/user-ca", string(pki.EncodeCert(uca.Cert))+string(keyPEM))
		r := harness.Run(t, harness.Env(awspeople.Env(pp.Alice)...), f.rnx, "--config", f.configFor(t), "login", "--issuer-ca", f.issuerCA)
		if r.Code == 0 || strings.Contains(r.Stderr, "joblet/user-ca") || !strings.Contains(f.issuer.Output(), "joblet/user-ca") {
			t.Errorf("the issuer signed with a user-issuing CA the node-issuing CA made, or told the caller (not its log) why not: %s", r)
		}
	}
}

// Cutting a person off (issue 26 item 7): the CRL stops their current
// login at once, while a new login still works; the signed policy's deny
// list stops both the certificate they hold and every new login.
func TestLoginPersonCutOff(t *testing.T) {
	t.Parallel()
	f := startLoginFleet(t)
	_, pp := people(t)
	alice := harness.Env(awspeople.Env(pp.Alice)...)
	cfg := f.configFor(t)
	loginFile := strings.TrimSuffix(cfg, ".yml") + ".login.pem"
	harness.MustRun(t, alice, f.rnx, "--config", cfg, "login", "--issuer-ca", f.issuerCA)
	harness.MustRun(t, alice, f.rnx, "--config", cfg, "job", "list")

	out := harness.MustRun(t, f.env, f.joblet, "certs", "revoke", "--cert", loginFile)
	if !strings.Contains(out.Stdout, "arn:aws:iam::123456789012:user/alice's login as developer") {
		t.Errorf("revoke does not say whose login it cut off: %s", out)
	}
	harness.Eventually(t, 20*time.Second, "the node refusing alice's revoked login", func() error {
		if r := harness.Run(t, alice, f.rnx, "--config", cfg, "job", "list"); r.Code == 0 {
			return errors.New("still accepted")
		}
		return nil
	})
	harness.MustRun(t, alice, f.rnx, "--config", cfg, "login", "--issuer-ca", f.issuerCA)
	if r := harness.Run(t, alice, f.rnx, "--config", cfg, "job", "list"); r.Code != 0 {
		t.Errorf("alice's new login (not denied): %s", r)
	}

	policy := filepath.Join(t.TempDir(), "policy.json")
	os.WriteFile(policy, []byte(strings.Replace(loginPolicy, `{"rules":[`, `{"deny":["arn:aws:iam::123456789012:user/alice"],"rules":[`, 1)), 0o600)
	harness.MustRun(t, f.env, f.joblet, "certs", "identity-policy", "sign", "--file", policy)
	harness.Eventually(t, 20*time.Second, "the node refusing denied alice", func() error {
		r := harness.Run(t, alice, f.rnx, "--config", cfg, "job", "list")
		if r.Code == 0 {
			return errors.New("still accepted")
		}
		if !strings.Contains(r.Stderr, "alice") {
			return fmt.Errorf("refused without naming her: %s", r)
		}
		return nil
	})
	if r := harness.Run(t, alice, f.rnx, "--config", f.configFor(t), "login", "--issuer-ca", f.issuerCA); r.Code == 0 || !strings.Contains(r.Stderr, "den") {
		t.Errorf("denied alice logging in: %s", r)
	}
	bob := harness.Env(awspeople.Env(pp.Bob)...)
	bcfg := f.configFor(t)
	harness.MustRun(t, bob, f.rnx, "--config", bcfg, "login", "--issuer-ca", f.issuerCA)
	if r := harness.Run(t, bob, f.rnx, "--config", bcfg, "job", "list"); r.Code != 0 {
		t.Errorf("bob, not denied: %s", r)
	}
}

// A CA rotation with people: each login carries the fleet's newer trust
// state (signed by a root the config trusts) into the people's config, the
// rotation re-issues the user-issuing CA under the new root, and after
// `finish` retires the old root a fresh login still works, with no config
// handed out again.
func TestLoginThroughARotation(t *testing.T) {
	t.Parallel()
	f := startLoginFleet(t)
	_, pp := people(t)
	alice := harness.Env(awspeople.Env(pp.Alice)...)
	cfg := f.configFor(t)
	harness.MustRun(t, alice, f.rnx, "--config", cfg, "login", "--issuer-ca", f.issuerCA)
	harness.MustRun(t, alice, f.rnx, "--config", cfg, "job", "list")

	harness.MustRun(t, f.env, f.joblet, "certs", "rotate-ca", "begin")
	r := harness.MustRun(t, alice, f.rnx, "--config", cfg, "login")
	if !strings.Contains(r.Stdout, "took the fleet's newer trust state") {
		t.Errorf("login after begin did not take the new trust state: %s", r)
	}
	rc, _ := config.LoadRnx(cfg)
	for _, n := range rc.Nodes {
		if cas, _ := pki.ParseCerts([]byte(n.CA)); len(cas) != 2 {
			t.Errorf("the people's config trusts %d CAs after begin, want both", len(cas))
		}
	}
	time.Sleep(3 * time.Second) // the node's refresh: it trusts both
	harness.MustRun(t, f.env, f.joblet, "certs", "rotate-ca", "promote")
	time.Sleep(3 * time.Second) // the node renews from the new CA
	harness.MustRun(t, alice, f.rnx, "--config", cfg, "login")
	harness.MustRun(t, alice, f.rnx, "--config", cfg, "job", "list")
	harness.MustRun(t, f.env, f.joblet, "certs", "rotate-ca", "finish", "--force")
	harness.Eventually(t, 20*time.Second, "alice's login after the old root is retired", func() error {
		if r := harness.Run(t, alice, f.rnx, "--config", cfg, "login"); r.Code != 0 {
			return fmt.Errorf("login: %s", r)
		}
		if r := harness.Run(t, alice, f.rnx, "--config", cfg, "job", "list"); r.Code != 0 {
			return fmt.Errorf("job list: %s", r)
		}
		return nil
	})
	rc, _ = config.LoadRnx(cfg)
	for _, n := range rc.Nodes {
		if cas, _ := pki.ParseCerts([]byte(n.CA)); len(cas) != 1 {
			t.Errorf("the people's config trusts %d CAs after finish, want the new one only", len(cas))
		}
	}
}
