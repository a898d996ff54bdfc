package test

import (
	"crypto"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

var rotationSteps = []string{"begin", "promote", "finish"}

func isWrite(action string) bool {
	return action == "CreateSecret" || action == "PutSecretValue" || action == "UpdateSecretVersionStage"
}

type rotStatus struct {
	Phase   string
	Current struct{ Sha256 string }
	Trusted []struct{ Sha256 string }
	Clients map[string]string `json:"clientIssuers"`
}

func rotationStatus(t *testing.T, env []string) rotStatus {
	t.Helper()
	joblet, _ := harness.Bins(t)
	var s rotStatus
	out := harness.MustRun(t, env, joblet, "certs", "rotate-ca", "status", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatal(err, out)
	}
	return s
}

// checkRotated asserts the end state of a completed rotation: stable, a new
// CA alone in the trust bundle, every client certificate from it, the store
// consistent, and a new node's server certificate verifying against it.
func checkRotated(t *testing.T, oldCA string) {
	t.Helper()
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, motoFor(t).URL)
	s := rotationStatus(t, env)
	if s.Phase != "stable" || s.Current.Sha256 == oldCA || len(s.Trusted) != 1 || s.Trusted[0].Sha256 != s.Current.Sha256 {
		t.Fatalf("end state: %+v (old CA %s)", s, oldCA)
	}
	for role, issuer := range s.Clients {
		if issuer != "current" {
			t.Fatalf("%s client certificate from %s", role, issuer)
		}
	}
	vals := readStore(t, "joblet")
	ca := checkStore(t, vals, "joblet")
	home, _, env := smNode(t, motoFor(t).URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	openssl.Verify(t, pki.EncodeCert(ca), []byte(serverConfig(t, home).Security.ServerCert), "sslserver")
}

// SIGKILL right after each store write of each rotation step, then re-run
// the step and the rest of the rotation: the fleet ends consistent.
func TestRotationCrashAtEachWrite(t *testing.T) {
	t.Parallel()
	points := crashEachRotationWrite(t, func() []string { return nil }, func(oldCA, step string, k int) {
		checkRotated(t, oldCA)
		reliability.Record(t, "crashes", fmt.Sprintf("rotate-ca %s SIGKILLed right after its store write %d", step, k+1),
			"re-running the step and the rest exits 0; the fleet ends on the new CA, the old one leaves every trust bundle")
	})
	if points < 8 {
		t.Fatalf("only %d crash points: the steps write more than that", points)
	}
}

// crashEachRotationWrite runs, for each rotation step and each store write
// k it makes, a fresh fleet rotated up to that step, the step SIGKILLed
// right after write k, then the step and the rest re-run; check judges the
// end state. prepare runs first in each fresh store and returns the flags
// for begin. It returns the number of crash points.
func crashEachRotationWrite(t *testing.T, prepare func() []string, check func(oldCA, step string, k int)) int {
	joblet, _ := harness.Bins(t)
	points := 0
	for si, step := range rotationSteps {
		for k := 0; ; k++ {
			moto := resetMoto(t)
			beginFlags := prepare()
			args := func(step string) []string {
				a := []string{"certs", "rotate-ca", step}
				if step == "begin" {
					a = append(a, beginFlags...)
				}
				return a
			}
			_, _, env := smNode(t, moto.URL)
			harness.MustRun(t, env, joblet, "certs", "bootstrap")
			oldCA := rotationStatus(t, env).Current.Sha256
			for _, prev := range rotationSteps[:si] {
				harness.MustRun(t, env, joblet, args(prev)...)
			}
			proxy := harness.StartAWSProxy(t, moto.URL)
			_, _, penv := smNode(t, proxy.URL)
			cmd := exec.Command(joblet, args(step)...)
			cmd.Env = penv
			writes := 0 // the proxy asks one call at a time
			killed := proxy.RunKilledAt(t, cmd, func(action string, _ int) bool {
				if !isWrite(action) {
					return false
				}
				writes++
				return writes-1 == k
			})
			if !killed {
				break // the step made fewer than k+1 writes: every point is covered
			}
			points++
			t.Logf("%s: killed after write %d", step, k+1)
			for _, rest := range rotationSteps[si:] {
				if r := harness.Run(t, env, joblet, args(rest)...); r.Code != 0 {
					t.Fatalf("re-running %s after a crash at write %d of %s: %s", rest, k+1, step, r)
				}
			}
			check(oldCA, step, k)
		}
	}
	t.Logf("%d crash points tested", points)
	return points
}

// Two operators running the same step at the same moment.
func TestRotationConcurrentOperators(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	oldCA := rotationStatus(t, env).Current.Sha256
	for _, step := range rotationSteps {
		var wg sync.WaitGroup
		results := make([]harness.Result, 2)
		for i := range results {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				results[i] = harness.Run(t, env, joblet, "certs", "rotate-ca", step)
			}(i)
		}
		wg.Wait()
		for i, r := range results {
			if r.Code != 0 {
				t.Fatalf("operator %d running %s: %s", i+1, step, r)
			}
		}
		reliability.Record(t, "races", "two operators run rotate-ca "+step+" at the same moment", "both exit 0")
		if step == "begin" {
			// One new CA: a single rotation record, one pending CA.
			out := awsCLI(t, "secretsmanager", "list-secrets", "--filters", "Key=name,Values=joblet/ca-rotation/", "--query", "length(SecretList)", "--output", "text")
			if strings.TrimSpace(out) != "1" {
				t.Fatalf("%s rotation records", out)
			}
		}
	}
	checkRotated(t, oldCA)
}

// SIGKILL right after each store write of each step of a migration to a
// KMS CA, then re-run the step and the rest: the fleet ends on the KMS CA.
func TestMigrationToKMSCrashAtEachWrite(t *testing.T) {
	t.Parallel()
	joblet, _ := harness.Bins(t)
	var arn string
	points := crashEachRotationWrite(t, func() []string {
		arn = kmsKey(t, "ECC_NIST_P256")
		return []string{"--ca-kms-key-id", arn}
	}, func(oldCA, step string, k int) {
		_, _, senv := smNode(t, motoFor(t).URL)
		s := rotationStatus(t, senv)
		if s.Phase != "stable" || s.Current.Sha256 == oldCA || len(s.Trusted) != 1 {
			t.Fatalf("after a crash at write %d of %s: %+v", k+1, step, s)
		}
		for role, issuer := range s.Clients {
			if issuer != "current" {
				t.Fatalf("%s client certificate from %s", role, issuer)
			}
		}
		vals := readStore(t, "joblet")
		ca, _ := pki.ParseCert([]byte(vals[kmsNames.CACert()]))
		if pub := kmsPublicKey(t, arn).(interface{ Equal(x crypto.PublicKey) bool }); !pub.Equal(ca.PublicKey) {
			t.Fatalf("after a crash at write %d of %s the current CA is not the KMS key's", k+1, step)
		}
		home, _, kenv := smNode(t, motoFor(t).URL, "JOBLET_CA_KMS_KEY_ID="+arn)
		harness.MustRun(t, kenv, joblet, "certs", "bootstrap")
		openssl.Verify(t, []byte(vals[kmsNames.CACert()]), []byte(serverConfig(t, home).Security.ServerCert), "sslserver")
		reliability.Record(t, "crashes", fmt.Sprintf("migration to KMS: rotate-ca %s SIGKILLed right after its store write %d", step, k+1),
			"re-running the step and the rest exits 0; the fleet ends on the KMS CA, alone in the trust bundle, a KMS-mode node joins")
	})
	if points < 6 {
		t.Fatalf("only %d crash points", points)
	}
}
