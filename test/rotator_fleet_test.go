package test

import (
	"context"
	"crypto"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// rotatorFleet is the setup the rotation tests under traffic share: the
// operator's `joblet certs init` (in moto's Secrets Manager) for a
// balancer address, 2 nodes bootstrapped from the store (refreshing every
// second) serving behind HAProxy at that address, up and answering the
// operator's client config through it.
type rotatorFleet struct {
	lb     string // HAProxy's address, the one the configs name
	opHome string
	opEnv  []string
	out    string    // the configs init wrote
	cfg    string    // out's rnx-config.yml
	inited time.Time // when init returned
	nodes  []fleetNode
	addrs  []string // the nodes' own addresses
}

// startRotatorFleet starts a rotatorFleet; initArgs go to `certs init`
// after its --address and --out.
func startRotatorFleet(t *testing.T, joblet string, initArgs ...string) *rotatorFleet {
	t.Helper()
	f := &rotatorFleet{lb: fmt.Sprintf("127.0.0.2:%d", harness.FreePort(t)), opHome: t.TempDir()}
	f.opEnv = harness.Env(append(harness.AWSEnv(motoFor(t).URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+f.opHome)...)
	f.out = filepath.Join(f.opHome, "configs")
	harness.MustRun(t, f.opEnv, joblet, append([]string{"certs", "init", "--address", f.lb, "--out", f.out}, initArgs...)...)
	f.inited = time.Now()
	for i := 1; i <= 2; i++ {
		home, port, env := smNode(t, motoFor(t).URL, "JOBLET_PUBLIC_ADDRESS="+f.lb, fmt.Sprintf("JOBLET_NODE_ID=node-%d", i))
		harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
		n := fleetNode{home: home, addr: fmt.Sprintf("127.0.0.1:%d", port), env: env}
		n.proc = harness.Start(t, env, joblet, "server", "--config", n.config())
		f.nodes = append(f.nodes, n)
		f.addrs = append(f.addrs, n.addr)
	}
	harness.StartHAProxy(t, f.lb, f.addrs)
	f.cfg = filepath.Join(f.out, "rnx-config.yml")
	harness.Eventually(t, 15*time.Second, "fleet up", func() error { return oneRequest(f.cfg) })
	return f
}

// startOneNode is the operator's `joblet certs init` (in moto's Secrets
// Manager) for one node at its own address, that node bootstrapped from
// the store (refreshing every second) and started; it returns the
// operator's environment, the configs init wrote, and the node.
func startOneNode(t *testing.T, joblet string) (opEnv []string, out string, n fleetNode) {
	t.Helper()
	opHome := t.TempDir()
	opEnv = harness.Env(append(harness.AWSEnv(motoFor(t).URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+opHome)...)
	out = filepath.Join(opHome, "configs")
	home, port, env := smNode(t, motoFor(t).URL)
	n = fleetNode{home: home, addr: fmt.Sprintf("127.0.0.1:%d", port), env: env}
	harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", n.addr, "--out", out)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	n.proc = harness.Start(t, env, joblet, "server", "--config", n.config())
	return opEnv, out, n
}

// startRotator runs `joblet certs rotate-secret` as a Lambda function
// under the Runtime Interface Emulator, with a home and a seen-store of
// its own and moto as its AWS (env adds to or overrides that), registered
// in moto as joblet-rotator; it returns the function and its ARN.
func startRotator(t *testing.T, joblet string, env ...string) (*harness.Lambda, string) {
	t.Helper()
	fnEnv := harness.Env(append(harness.AWSEnv(motoFor(t).URL), append([]string{"JOBLET_HOME=" + t.TempDir(), "JOBLET_SEEN_DIR=" + t.TempDir()}, env...)...)...)
	fn := harness.StartLambda(t, fnEnv, joblet, "certs", "rotate-secret")
	return fn, harness.MotoFunction(t, motoFor(t).URL, "joblet-rotator", fn.URL)
}

// rotateBy asks Secrets Manager to rotate secret now, with token, by the
// function fnARN, on schedule.
func rotateBy(c *sm.Client, secret, token, fnARN, schedule string) error {
	_, err := c.RotateSecret(context.Background(), &sm.RotateSecretInput{SecretId: aws.String(secret), ClientRequestToken: aws.String(token),
		RotationLambdaARN: aws.String(fnARN), RotationRules: &smtypes.RotationRulesType{ScheduleExpression: aws.String(schedule)}})
	return err
}

// parsePair parses a certificate and a private key (failing the test on
// either) and returns them with MatchesKey's answer: nil if the key is the
// certificate's.
func parsePair(t *testing.T, certPEM, keyPEM string) (*x509.Certificate, crypto.Signer, error) {
	t.Helper()
	cert, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		t.Fatal(err)
	}
	k, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		t.Fatal(err)
	}
	return cert, k, pki.MatchesKey(cert, k)
}

// rotatorIAM is moto with IAM enforced once noAuth calls are made (the
// users' creation), with an "operator" user holding the actions of
// `iam-policy --for rotation` and a "rotator" user those of `--for
// rotator` (the function's); what a test adds takes its own calls.
type rotatorIAM struct {
	m           *harness.Moto
	rotator     *certs.Policy
	opID, opKey string
	fnID, fnKey string
}

func startRotatorIAM(t *testing.T, noAuth int) *rotatorIAM {
	t.Helper()
	m, err := harness.StartMoto(fmt.Sprintf("INITIAL_NO_AUTH_ACTION_COUNT=%d", noAuth))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	rotation, rotator := policyFor(t, "rotation"), policyFor(t, "rotator")
	r := &rotatorIAM{m: m, rotator: rotator}
	r.opID, r.opKey = iamUserPolicy(t, m.URL, "operator", actionsOnly(rotation))
	r.fnID, r.fnKey = iamUserPolicy(t, m.URL, "rotator", actionsOnly(r.rotator))
	return r
}
