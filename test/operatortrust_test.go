package test

import (
	"context"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// rotatedFleet bootstraps a fleet in moto and rotates its root once: the
// root retired, the promote's genuine state (which still trusts it) and
// the finish's, for the rollback tests.
type rotatedFleet struct {
	env         []string
	joblet      string
	retired     *x509.Certificate
	promoted    *pki.TrustState
	promotedRaw string
	finished    *pki.TrustState
}

func rotateOnce(t *testing.T) *rotatedFleet {
	t.Helper()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	retired, err := pki.ParseCert([]byte(readStore(t, "joblet")["joblet/ca-cert"]))
	if err != nil {
		t.Fatal(err)
	}
	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "begin")
	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "promote")
	promoted, promotedRaw := storedTrust(t)
	if !trustsCert(promoted, retired) {
		t.Fatal("the promote's trust state does not trust the outgoing root: the test's premise is wrong")
	}
	harness.MustRun(t, env, joblet, "certs", "rotate-ca", "finish", "--force")
	finished, _ := storedTrust(t)
	if trustsCert(finished, retired) {
		t.Fatal("the finish's trust state still trusts the retired root")
	}
	return &rotatedFleet{env: env, joblet: joblet, retired: retired, promoted: promoted, promotedRaw: promotedRaw, finished: finished}
}

// putSecret writes a new current version of name in moto, as anyone with
// PutSecretValue on the prefix can.
func putSecret(t *testing.T, name, value string) {
	t.Helper()
	if _, err := smClient(motoFor(t).URL).PutSecretValue(context.Background(), &sm.PutSecretValueInput{SecretId: aws.String(name), SecretString: aws.String(value)}); err != nil {
		t.Fatal(err)
	}
}

// storedTrust is the trust state now under joblet/ca-bundle, unverified.
func storedTrust(t *testing.T) (*pki.TrustState, string) {
	t.Helper()
	raw := readBundle(t)
	doc, err := pki.PeekTrust([]byte(raw), "joblet")
	if err != nil {
		t.Fatalf("joblet/ca-bundle holds no trust state: %v", err)
	}
	return doc, raw
}

func trustsCert(doc *pki.TrustState, c *x509.Certificate) bool {
	for _, r := range doc.RootCerts() {
		if r.Equal(c) {
			return true
		}
	}
	return false
}

// The rollback an attacker review found: after a rotation finished, the
// promote's genuine trust state (it still trusts the retired root) is put
// back twice, so that AWSPREVIOUS holds it too. The operator's scheduled
// `certs trust sign` must sign from the newest state in the secret's history,
// never re-sign the older one (which would make every node trust the
// retired root again), and `certs status` must name the rollback.
func TestOperatorsSignFromTheNewestTrustState(t *testing.T) {
	f := rotateOnce(t)
	env, joblet, retired, promotedRaw, finished := f.env, f.joblet, f.retired, f.promotedRaw, f.finished

	// The attack: the older genuine state, put back twice.
	putSecret(t, "joblet/ca-bundle", promotedRaw)
	putSecret(t, "joblet/ca-bundle", promotedRaw)

	st := harness.Run(t, env, joblet, "certs", "status")
	if st.Code == 0 || !strings.Contains(st.Stdout+st.Stderr, "an older state was put back") {
		t.Fatalf("certs status after a rollback of ca-bundle: exit %d, want non-zero naming it:\n%s", st.Code, st)
	}
	harness.MustRun(t, env, joblet, "certs", "trust", "sign")
	signed, _ := storedTrust(t)
	if trustsCert(signed, retired) {
		t.Fatalf("ROLLED BACK: trust sign re-signed the older state (version %d): the retired root %s is trusted again", signed.Version, pki.Fingerprint(retired))
	}
	if signed.Version <= finished.Version {
		t.Fatalf("trust sign wrote version %d, not above the newest genuine one (%d)", signed.Version, finished.Version)
	}
	if st := harness.Run(t, env, joblet, "certs", "status"); strings.Contains(st.Stdout+st.Stderr, "put back") {
		t.Fatalf("certs status still reports a rollback after trust sign:\n%s", st)
	}
}

// A whole-root swap: someone who can write the store replaces the root
// certificate and key with their own and writes a trust state their root
// signed. Nodes refuse it (TestForgedTrustChangesNothing); an operator's
// command pinned to the fleet's root refuses it too, writing nothing, and
// `certs status`, pinned or not, names it. The pin keeps working across a
// rotation (through the state's lineage).
func TestOperatorPinRefusesAReplacedRoot(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	vals := readStore(t, "joblet")
	root, err := pki.ParseCert([]byte(vals["joblet/ca-cert"]))
	if err != nil {
		t.Fatal(err)
	}
	pinned := harness.Env(append(env, "JOBLET_CA_FINGERPRINT="+pki.PinOf(root).String())...)

	// The pin across a rotation: every step and a trust sign work pinned
	// to the first root.
	for _, step := range [][]string{{"begin"}, {"promote"}, {"finish", "--force"}} {
		harness.MustRun(t, pinned, joblet, append([]string{"certs", "rotate-ca"}, step...)...)
	}
	harness.MustRun(t, pinned, joblet, "certs", "trust", "sign")
	harness.MustRun(t, pinned, joblet, "certs", "revoke", "--serial", "0a09")
	if st := harness.Run(t, pinned, joblet, "certs", "status"); strings.Contains(st.Stdout+st.Stderr, "pins") {
		t.Fatalf("a status pinned to the first root refused the rotated fleet:\n%s", st)
	}

	// The swap.
	evil := newEvilCA(t)
	keyPEM, _ := pki.EncodeKey(evil.Key)
	doc, err := pki.SignTrust(context.Background(), pki.NewTrustState("joblet", uint64(time.Now().Unix())+5, []*x509.Certificate{evil.Cert}, []*x509.Certificate{evil.Cert}, nil, time.Now()), evil)
	if err != nil {
		t.Fatal(err)
	}
	putSecret(t, "joblet/ca-cert", string(pki.EncodeCert(evil.Cert)))
	putSecret(t, "joblet/ca-key", string(keyPEM))
	putSecret(t, "joblet/ca-bundle", string(doc))
	crlBefore := currentValue(t, "joblet/crl")

	r := harness.Run(t, pinned, joblet, "certs", "revoke", "--serial", "0a1b2c")
	if r.Code == 0 || !strings.Contains(r.Stderr, "pins") {
		t.Fatalf("a pinned revoke over a swapped root: exit %d, want refused naming the pin:\n%s", r.Code, r)
	}
	if currentValue(t, "joblet/crl") != crlBefore {
		t.Fatal("a refused pinned revoke wrote the CRL")
	}
	if r := harness.Run(t, pinned, joblet, "certs", "trust", "sign"); r.Code == 0 {
		t.Fatalf("a pinned trust sign over a swapped root succeeded:\n%s", r)
	}
	if st := harness.Run(t, pinned, joblet, "certs", "status"); st.Code == 0 || !strings.Contains(st.Stdout+st.Stderr, "pins") {
		t.Fatalf("a pinned status over a swapped root: exit %d, want non-zero naming the pin:\n%s", st.Code, st)
	}
	// Unpinned, status still sees the fleet's own states in the history,
	// signed by keys the swapped root's lineage does not know.
	if st := harness.Run(t, env, joblet, "certs", "status"); st.Code == 0 || !strings.Contains(st.Stdout+st.Stderr, "outside this root's lineage") {
		t.Fatalf("an unpinned status over a swapped root: exit %d, want non-zero naming the foreign states:\n%s", st.Code, st)
	}
}

// The same rollback on the CRL: a revocation, then an older CRL put back
// twice (so that AWSPREVIOUS holds it too). The next revoke must keep
// every revocation the newest CRL in the history lists, and number its CRL
// above it: otherwise the revocation is lost, and nodes that hold the
// newer CRL refuse the next one.
func TestRevokeMergesTheNewestCRLInHistory(t *testing.T) {
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
			t.Errorf("LOST: the CRL after a rollback and a revoke does not list %s (lists %v)", s, listed)
		}
	}
	if crl.Number.Cmp(newer) <= 0 {
		t.Errorf("the CRL after a rollback is number %s, not above the newest genuine one (%s): nodes holding that one refuse it", crl.Number, newer)
	}
}

// A node that joins while an older trust state and CRL were put back (each
// twice) takes them at its join, which reads the current versions once.
// Its server's first refresh looks once at the secrets' history and takes
// the newest it can verify: from then on it refuses what the fleet revoked
// before the rollback.
func TestJoinDuringARollbackTakesTheNewestAtFirstRefresh(t *testing.T) {
	t.Parallel()
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
	// A first revocation makes the CRL; the state and CRL it leaves are
	// the ones put back after the second.
	developer := filepath.Join(homeA, "config", "rnx-config-developer.yml")
	harness.MustRun(t, envA, joblet, "certs", "revoke", "--serial", readerSerial(t, developer))
	oldState, oldCRL := get("joblet/ca-bundle"), get("joblet/crl")
	reader := filepath.Join(homeA, "config", "rnx-config-reader.yml")
	harness.MustRun(t, envA, joblet, "certs", "revoke", "--serial", readerSerial(t, reader))
	for i := 0; i < 2; i++ {
		putSecret(t, "joblet/ca-bundle", oldState)
		putSecret(t, "joblet/crl", oldCRL)
	}

	homeB, portB, envB := smNode(t, moto.URL, "JOBLET_PUBLIC_ADDRESS="+lb)
	harness.MustRun(t, envB, joblet, "certs", "bootstrap", "--refresh-interval", "1h")
	if serverConfig(t, homeB).Security.TrustState != oldState {
		t.Fatal("the join did not take the state put back: the test's premise is wrong")
	}
	srv := harness.Start(t, envB, joblet, "server", "--config", filepath.Join(homeB, "config", "joblet-config.yml"))
	readerAtB := directConfig(t, reader, lb, fmt.Sprintf("127.0.0.1:%d", portB))
	harness.Eventually(t, 20*time.Second, "the joined node refusing the reader revoked before the rollback", func() error {
		r := harness.Run(t, harness.Env(), rnx, "--config", readerAtB, "job", "list")
		if r.Code == 0 || !strings.Contains(r.Stderr, "revoked") {
			return fmt.Errorf("exit %d: %s", r.Code, r)
		}
		return nil
	})
	if !strings.Contains(srv.Output(), "older than one in its history") {
		t.Errorf("the node did not say it took the newest version from the history:\n%s", srv.Output())
	}
	if serverConfig(t, homeB).Security.TrustState == oldState {
		t.Error("the node still holds the state put back")
	}
}
