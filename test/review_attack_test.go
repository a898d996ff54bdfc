package test

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// floodVersions writes n junk versions of name: Secrets Manager keeps
// every version created in the last 24 hours however many there are,
// but awssm.History reads only the 100 newest.
// REVIEW_NO_FLOOD=1 writes none: the control, under which each test
// using it passes on main.
func floodVersions(t *testing.T, name string, n int) {
	t.Helper()
	if os.Getenv("REVIEW_NO_FLOOD") != "" {
		return
	}
	for i := 0; i < n; i++ {
		putSecret(t, name, fmt.Sprintf("junk %d", i))
	}
}

// An attacker review: the rollback TestOperatorsSignFromTheNewestTrustState
// covers, preceded by 100 junk PutSecretValue calls, so that the newest
// genuine state lies beyond the 100 versions the history walk reads.
func TestReviewFloodHidesTheNewestTrustState(t *testing.T) {
	t.Parallel()
	f := rotateOnce(t)
	env, joblet, retired, promotedRaw, finished := f.env, f.joblet, f.retired, f.promotedRaw, f.finished
	promoted := f.promoted

	// (Versions are max(held+1, clock seconds): minutes after the finish,
	// as in real life, the re-signed state is numbered above the finish's
	// and every node takes it, retired root and all.)
	floodVersions(t, "joblet/ca-bundle", 100)
	putSecret(t, "joblet/ca-bundle", promotedRaw)
	putSecret(t, "joblet/ca-bundle", promotedRaw)

	harness.MustRun(t, env, joblet, "certs", "trust", "sign")
	signed, _ := storedTrust(t)
	t.Logf("versions: promoted %d, finished %d, signed %d, clock %d", promoted.Version, finished.Version, signed.Version, time.Now().Unix())
	if trustsCert(signed, retired) {
		t.Errorf("ROLLED BACK: after 100 junk versions, trust sign re-signed the older state (version %d, newest genuine %d): the retired root %s is trusted again", signed.Version, finished.Version, pki.Fingerprint(retired))
	}
}

// The same flood on the CRL: a revoke after it loses the revocation the
// newest CRL (beyond the 100 read) lists, and numbers its CRL below it.
func TestReviewFloodHidesTheNewestCRL(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	current := func() string {
		t.Helper()
		got, err := smClient(moto.URL).GetSecretValue(context.Background(), &sm.GetSecretValueInput{SecretId: aws.String("joblet/crl")})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(got.SecretString)
	}
	harness.MustRun(t, env, joblet, "certs", "revoke", "--serial", "0a01")
	older := current()
	harness.MustRun(t, env, joblet, "certs", "revoke", "--serial", "0a02")
	newer, _ := pki.PeekCRLNumber([]byte(current()))
	// A second later: a number not above the newest genuine one is then
	// the walk's fault, not the clock's.
	time.Sleep(1100 * time.Millisecond)
	floodVersions(t, "joblet/crl", 100)
	putSecret(t, "joblet/crl", older)
	putSecret(t, "joblet/crl", older)
	harness.MustRun(t, env, joblet, "certs", "revoke", "--serial", "0a03")
	crl, err := pki.ParseCRLUnverified([]byte(current()))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.Text(16)] = true
	}
	for _, s := range []string{"a01", "a02", "a03"} {
		if !listed[s] {
			t.Errorf("LOST: after 100 junk versions and a rollback, the revoke's CRL does not list %s (lists %v)", s, listed)
		}
	}
	if crl.Number.Cmp(newer) <= 0 {
		t.Errorf("the CRL after the flood is number %s, not above the newest genuine one (%s): nodes holding that one refuse it", crl.Number, newer)
	}
}

// recreateSecret deletes name at once (no recovery window) and creates it
// again holding value: a new secret, with none of the old one's history.
func recreateSecret(t *testing.T, name, value string) {
	t.Helper()
	c := smClient(motoFor(t).URL)
	if _, err := c.DeleteSecret(context.Background(), &sm.DeleteSecretInput{SecretId: aws.String(name), ForceDeleteWithoutRecovery: aws.Bool(true)}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreateSecret(context.Background(), &sm.CreateSecretInput{Name: aws.String(name), SecretString: aws.String(value)}); err != nil {
		t.Fatal(err)
	}
}

// The history walk with DeleteSecret and CreateSecret (the threat model's
// "maybe DeleteSecret"): ca-bundle deleted and created again holding the
// promote's genuine state. The new secret's history is that state alone,
// and trust sign re-signs it: the retired root trusted again.
func TestReviewRecreatedBundleHidesTheNewestTrustState(t *testing.T) {
	f := rotateOnce(t)
	env, joblet, retired, promotedRaw, finished := f.env, f.joblet, f.retired, f.promotedRaw, f.finished

	recreateSecret(t, "joblet/ca-bundle", promotedRaw)

	st := harness.Run(t, env, joblet, "certs", "status")
	if st.Code == 0 {
		t.Errorf("certs status after ca-bundle was deleted and created again with an older state: exit 0:\n%s", st)
	}
	harness.MustRun(t, env, joblet, "certs", "trust", "sign")
	signed, _ := storedTrust(t)
	if trustsCert(signed, retired) {
		t.Errorf("ROLLED BACK: after ca-bundle was deleted and created again, trust sign re-signed the older state (version %d, newest genuine %d): the retired root %s is trusted again", signed.Version, finished.Version, pki.Fingerprint(retired))
	}
}

// TestJoinDuringARollbackTakesTheNewestAtFirstRefresh with 100 junk
// versions written before each put-back: the node's first refresh reads
// only the 100 newest versions of each secret, and keeps serving the
// reader revoked before the rollback.
func TestReviewFloodHidesTheNewestFromAJoiningNode(t *testing.T) {
	t.Parallel()
	floodN := 100
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	lb := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	homeA, _, envA := smNode(t, moto.URL, "JOBLET_PUBLIC_ADDRESS="+lb)
	harness.MustRun(t, envA, joblet, "certs", "bootstrap")
	get := func(name string) string {
		got, err := smClient(moto.URL).GetSecretValue(context.Background(), &sm.GetSecretValueInput{SecretId: aws.String(name)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(got.SecretString)
	}
	developer := filepath.Join(homeA, "config", "rnx-config-developer.yml")
	harness.MustRun(t, envA, joblet, "certs", "revoke", "--serial", readerSerial(t, developer))
	oldState, oldCRL := get("joblet/ca-bundle"), get("joblet/crl")
	reader := filepath.Join(homeA, "config", "rnx-config-reader.yml")
	harness.MustRun(t, envA, joblet, "certs", "revoke", "--serial", readerSerial(t, reader))
	floodVersions(t, "joblet/ca-bundle", floodN)
	floodVersions(t, "joblet/crl", floodN)
	putSecret(t, "joblet/ca-bundle", oldState)
	putSecret(t, "joblet/crl", oldCRL)

	homeB, portB, envB := smNode(t, moto.URL, "JOBLET_PUBLIC_ADDRESS="+lb)
	harness.MustRun(t, envB, joblet, "certs", "bootstrap", "--refresh-interval", "1h")
	srv := harness.Start(t, envB, joblet, "server", "--config", filepath.Join(homeB, "config", "joblet-config.yml"))
	readerAtB := directConfig(t, reader, lb, fmt.Sprintf("127.0.0.1:%d", portB))
	harness.Eventually(t, 20*time.Second, "REVOKED SERVED? the joined node refusing the reader revoked before the rollback (100 junk versions of each secret were written before it)", func() error {
		r := harness.Run(t, harness.Env(), rnx, "--config", readerAtB, "job", "list")
		if r.Code == 0 || !strings.Contains(r.Stderr, "revoked") {
			return fmt.Errorf("exit %d: %s", r.Code, r)
		}
		return nil
	})
	_ = srv
}

// One PutSecretValue of junk to the CRL secret (write access, no root
// key): the next revoke must still run (the CRL's history holds the
// genuine one; issue 22: nothing written without the root key blocks a
// revocation) and keep every earlier revocation.
func TestReviewJunkCRLBlocksRevoke(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	harness.MustRun(t, env, joblet, "certs", "revoke", "--serial", "0a01")
	putSecret(t, "joblet/crl", "junk")
	r := harness.Run(t, env, joblet, "certs", "revoke", "--serial", "0a02")
	if r.Code != 0 {
		t.Fatalf("BLOCKED: one junk write to joblet/crl stops every revoke: exit %d\n%s", r.Code, r)
	}
	crl, err := pki.ParseCRLUnverified([]byte(currentValue(t, "joblet/crl")))
	if err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, e := range crl.RevokedCertificateEntries {
		listed[e.SerialNumber.Text(16)] = true
	}
	if !listed["a01"] || !listed["a02"] {
		t.Errorf("LOST: after a junk CRL and a revoke, the CRL lists %v, want a01 and a02", listed)
	}
}

// One junk write to ca-cert (the root certificate is public and the signed
// trust state lists it): revoke, which needs only the root key and the
// CRL, must still run.
func TestReviewJunkRootCertBlocksRevoke(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	harness.MustRun(t, env, joblet, "certs", "revoke", "--serial", "0a01")
	putSecret(t, "joblet/ca-cert", "junk")
	if r := harness.Run(t, env, joblet, "certs", "revoke", "--serial", "0a02"); r.Code != 0 {
		t.Fatalf("BLOCKED: one junk write to joblet/ca-cert stops every revoke: exit %d\n%s", r.Code, r)
	}
}

// The pin across a rotation with a junk ca-bundle on top (one write
// without the root key): a pinned revoke must still run, from the newest
// state in the history.
func TestReviewPinnedRevokeOverJunkBundleAfterRotation(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	root, err := pki.ParseCert([]byte(readStore(t, "joblet")["joblet/ca-cert"]))
	if err != nil {
		t.Fatal(err)
	}
	pinned := harness.Env(append(env, "JOBLET_CA_FINGERPRINT="+pki.PinOf(root).String())...)
	for _, step := range [][]string{{"begin"}, {"promote"}, {"finish", "--force"}} {
		harness.MustRun(t, pinned, joblet, append([]string{"certs", "rotate-ca"}, step...)...)
	}
	putSecret(t, "joblet/ca-bundle", "junk")
	if r := harness.Run(t, pinned, joblet, "certs", "revoke", "--serial", "0a02"); r.Code != 0 {
		t.Fatalf("BLOCKED: a pinned revoke after a rotation, with junk on ca-bundle: exit %d\n%s", r.Code, r)
	}
	if r := harness.Run(t, pinned, joblet, "certs", "trust", "sign"); r.Code != 0 {
		t.Fatalf("BLOCKED: a pinned trust sign after a rotation, with junk on ca-bundle: exit %d\n%s", r.Code, r)
	}
}

// DeleteSecret on ca-bundle with the default recovery window (the secret
// is then "marked for deletion": GetSecretValue refuses it): revoke must
// still run.
func TestReviewBundlePendingDeletionBlocksRevoke(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	if _, err := smClient(moto.URL).DeleteSecret(context.Background(), &sm.DeleteSecretInput{SecretId: aws.String("joblet/ca-bundle")}); err != nil {
		t.Fatal(err)
	}
	if r := harness.Run(t, env, joblet, "certs", "revoke", "--serial", "0a02"); r.Code != 0 {
		t.Fatalf("BLOCKED: ca-bundle pending deletion stops every revoke: exit %d\n%s", r.Code, r)
	}
}

// The same DeleteSecret against a node: its refresh must still take a
// revocation the CRL secret holds (issue 22: nothing written without the
// root key stops a node taking revocations).
func TestReviewBundlePendingDeletionStopsNodeRefresh(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	home, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	harness.MustRun(t, env, joblet, "certs", "revoke", "--serial", "0a05")
	if _, err := smClient(moto.URL).DeleteSecret(context.Background(), &sm.DeleteSecretInput{SecretId: aws.String("joblet/ca-bundle")}); err != nil {
		t.Fatal(err)
	}
	r := harness.Run(t, env, joblet, "certs", "renew", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	crl, err := pki.ParseCRLUnverified([]byte(serverConfig(t, home).Security.CRL))
	if err != nil || !slices.ContainsFunc(crl.RevokedCertificateEntries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Text(16) == "a05" }) {
		t.Fatalf("NOT TAKEN: with ca-bundle pending deletion, the node's refresh did not take the revocation in joblet/crl (%v): exit %d\n%s", err, r.Code, r)
	}
}
