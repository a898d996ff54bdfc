package test

import (
	"context"
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	awsmw "github.com/aws/aws-sdk-go-v2/aws/middleware"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go/middleware"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
	"github.com/ehsaniara/joblet/test/harness"
)

// hookedClient is a moto client that calls after(op) once each of its
// calls has returned: a test runs a rotation step there, between two of
// the sampler's reads, as a concurrent operator would.
func hookedClient(url string, after func(op string)) *sm.Client {
	return sm.New(smClient(url).Options(), func(o *sm.Options) {
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			return st.Initialize.Add(middleware.InitializeMiddlewareFunc("after-call", func(ctx context.Context, in middleware.InitializeInput, next middleware.InitializeHandler) (middleware.InitializeOutput, middleware.Metadata, error) {
				out, md, err := next.HandleInitialize(ctx, in)
				after(awsmw.GetOperationName(ctx))
				return out, md, err
			}), middleware.After)
		})
	})
}

// The chaos run's store sampler judges "one CA lineage" from what it
// reads; a rotation step landing between two of its reads must not make it
// call a violation the store never held. A begin (which writes the cross
// certificate before the trust bundle that holds the new CA) is run after
// each of the sampler's calls in turn, on moto; every CA it adds is
// cross-signed, so no position may report one that is not.
func TestChaosSamplerLineageOneMoment(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	env := harness.Env(append(harness.AWSEnv(moto.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+t.TempDir())...)
	harness.MustRun(t, env, joblet, "certs", "init", "--address", "127.0.0.1:1", "--out", t.TempDir())
	fleet := &certs.Fleet{Store: awssm.New(smClient(moto.URL), moto.URL, nil)}
	ctx := context.Background()
	c := &chaosRun{t: t, storeCall: map[string]int{}}
	c.sampleStore() // the initial CA starts the lineage
	positions := 0
	for k := 0; k < 80; k++ {
		calls, fired := 0, ""
		c.sampleAPI = hookedClient(moto.URL, func(op string) {
			if calls == k {
				if _, err := fleet.BeginRotation(ctx, certs.CAKeyRef{}); err != nil {
					t.Fatalf("begin after the sampler's call %d (%s): %v", k, op, err)
				}
				fired = op
			}
			calls++
		})
		c.sampleStore()
		if fired == "" {
			break // k is past the sample's last call
		}
		positions++
		for _, v := range c.storeBad {
			if v.invariant == invLineage && !strings.Contains(v.detail, "[seen]") {
				t.Errorf("a begin after the sampler's call %d (%s): %s", k, fired, v.detail)
				v.detail += " [seen]"
			}
		}
		c.storeBad = nil
		if _, err := fleet.PromoteRotation(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := fleet.FinishRotation(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if positions < 5 {
		t.Fatalf("a sample made only %d store calls", positions)
	}
	t.Logf("a begin tried after each of the sampler's %d calls", positions)

	// The judge still sees a CA trusted with no cross certificate (a PEM
	// bundle, as a fleet from before the signed trust state has).
	c.sampleAPI = nil
	key, _ := pki.GenerateKey(pki.ECDSAP256, nil)
	stranger, err := pki.NewCA(key, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cur, _ := getStage(ctx, smClient(moto.URL), "joblet/ca-cert", "AWSCURRENT")
	if _, err := smClient(moto.URL).PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: aws.String("joblet/ca-bundle"),
		SecretString: aws.String(cur + string(pki.EncodeCert(stranger)))}); err != nil {
		t.Fatal(err)
	}
	c.sampleStore()
	if len(c.storeBad) != 1 || c.storeBad[0].invariant != invLineage || !strings.Contains(c.storeBad[0].detail, pki.Fingerprint(stranger)[:16]) {
		t.Fatalf("a CA no CA of the lineage cross-signed, put in the bundle: %+v", c.storeBad)
	}
}

// The lineage judge joins a sample's CAs in whatever order they come (a
// sample can show one rotation's CA and the next one's), and reports only
// the CAs no cross certificate joins.
func TestChaosJoinLineage(t *testing.T) {
	now := time.Now()
	newCA := func() *pki.CA {
		k, _ := pki.GenerateKey(pki.ECDSAP256, nil)
		c, err := pki.NewCA(k, now, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		return &pki.CA{Cert: c, Key: k}
	}
	cross := func(sub, by *pki.CA) *x509.Certificate {
		c, err := pki.CrossSign(sub.Cert, by, now)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b, c, d := newCA(), newCA(), newCA(), newCA()
	crosses := map[string]*x509.Certificate{"1": cross(b, a), "2": cross(c, b), "3": cross(d, newCA())}
	lineage := map[string]*x509.Certificate{pki.Fingerprint(a.Cert): a.Cert}
	left := joinLineage(lineage, crosses, []*x509.Certificate{c.Cert, d.Cert, b.Cert})
	if len(left) != 1 || !left[0].Equal(d.Cert) {
		t.Fatalf("left out %d CAs, want d (cross-signed by a CA outside the lineage) alone", len(left))
	}
	if len(lineage) != 3 || lineage[pki.Fingerprint(c.Cert)] == nil {
		t.Fatalf("the lineage holds %d CAs, want a, b and c", len(lineage))
	}
}
