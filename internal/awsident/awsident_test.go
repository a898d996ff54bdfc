package awsident_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/ehsaniara/joblet/internal/awsident"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/testutil/awspeople"
)

var motoURL string

func TestMain(m *testing.M) {
	mo := awspeople.Moto()
	motoURL = mo.URL
	code := m.Run()
	mo.Stop()
	os.Exit(code)
}

func cfgFor(creds aws.CredentialsProvider) aws.Config { return awspeople.Config(motoURL, creds) }

type principals struct{ alice, bob, bobAsAdmin aws.Config }

func people(t *testing.T) *principals {
	p := awspeople.Make(t, motoURL)
	return &principals{alice: p.Alice, bob: p.Bob, bobAsAdmin: p.BobAsAdmin}
}

const fleet = "joblet-prod"

var key = awsident.KeyHash([]byte("the public key a certificate is asked for"))

func verifier(now time.Time) awsident.Want {
	return awsident.Want{Audience: fleet, KeyHash: key, Config: cfgFor(nil), Now: now}
}

// prove, verify and call: who STS says signed.
func whoSigned(t *testing.T, cfg aws.Config, p *awsident.Proof, want awsident.Want) (*idpolicy.Principal, error) {
	t.Helper()
	req, err := awsident.Verify(context.Background(), p, want)
	if err != nil {
		return nil, err
	}
	id, err := awsident.Call(http.DefaultClient, req)
	if err != nil {
		return nil, err
	}
	return idpolicy.Canonical(id.ARN)
}

func TestLoginProofNamesTheSigner(t *testing.T) {
	ps := people(t)
	now := time.Now()
	for _, c := range []struct {
		who  string
		cfg  aws.Config
		want string
	}{
		{"alice", ps.alice, "arn:aws:iam::123456789012:user/alice"},
		{"bob", ps.bob, "arn:aws:iam::123456789012:user/bob"},
		// An assumed role's session: the role by name (STS's answer has no
		// path) and the session.
		{"bob as admins", ps.bobAsAdmin, "arn:aws:iam::123456789012:role/admins"},
	} {
		p, err := awsident.Prove(context.Background(), c.cfg, fleet, key, now)
		if err != nil {
			t.Fatal(err)
		}
		got, err := whoSigned(t, c.cfg, p, verifier(now))
		if err != nil {
			t.Fatalf("%s: %v", c.who, err)
		}
		if got.ARN != c.want {
			t.Errorf("%s: STS named %s, want %s", c.who, got.ARN, c.want)
		}
		if c.who == "bob as admins" && got.Session != "bob-laptop" {
			t.Errorf("bob's session is %q", got.Session)
		}
	}
}

func TestLoginProofRefused(t *testing.T) {
	ps := people(t)
	now := time.Now()
	fresh := func() *awsident.Proof {
		p, err := awsident.Prove(context.Background(), ps.alice, fleet, key, now)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	other := verifier(now)
	other.Audience = "joblet-staging"
	otherKey := verifier(now)
	otherKey.KeyHash = awsident.KeyHash([]byte("another key"))
	old, err := awsident.Prove(context.Background(), ps.alice, fleet, key, now.Add(-16*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := fresh()
	elsewhere.URL = "http://127.0.0.1:1/"
	elsewhere.Headers["Host"] = []string{"127.0.0.1:1"}
	redirected := fresh()
	redirected.URL = motoURL + "/?Action=GetCallerIdentity"
	get := fresh()
	get.Method = http.MethodGet
	body := fresh()
	body.Body = "Action=GetCallerIdentity&Version=2011-06-15&Extra=1"
	// A binding header added after signing: not covered by the signature.
	unsigned, err := awsident.Prove(context.Background(), ps.alice, "", key, now)
	if err != nil {
		t.Fatal(err)
	}
	auth := unsigned.Headers["Authorization"][0]
	unsigned.Headers["Authorization"] = []string{strings.Replace(auth, "x-joblet-audience;", "", 1)}
	unsigned.Headers[awsident.AudienceHeader] = []string{fleet}
	for _, c := range []struct {
		what string
		p    *awsident.Proof
		want awsident.Want
	}{
		{"a proof for another fleet", fresh(), other},
		{"a proof replayed for another public key", fresh(), otherKey},
		{"a proof signed 16 minutes ago", old, verifier(now)},
		{"a proof naming a host that is not STS", elsewhere, verifier(now)},
		{"a proof with a query", redirected, verifier(now)},
		{"a GET", get, verifier(now)},
		{"another body", body, verifier(now)},
		{"an audience the signature does not cover", unsigned, verifier(now)},
	} {
		if _, err := whoSigned(t, ps.alice, c.p, c.want); !errors.Is(err, awsident.ErrProof) {
			t.Errorf("%s: %v, want refused before STS is asked", c.what, err)
		}
	}
}

// The signature itself: a proof whose audience was changed after signing
// passes every check the verifier makes and is refused by STS (moto
// recomputes the signature from the signed headers).
func TestLoginProofTamperedIsRefusedBySTS(t *testing.T) {
	ps := people(t)
	now := time.Now()
	p, err := awsident.Prove(context.Background(), ps.alice, "joblet-staging", key, now)
	if err != nil {
		t.Fatal(err)
	}
	p.Headers[awsident.AudienceHeader] = []string{fleet}
	req, err := awsident.Verify(context.Background(), p, verifier(now))
	if err != nil {
		t.Fatalf("the verifier's own checks: %v", err)
	}
	if _, err := awsident.Call(http.DefaultClient, req); !errors.Is(err, awsident.ErrProof) || !strings.Contains(err.Error(), "Signature") {
		t.Fatalf("a tampered proof sent to STS: %v, want STS's SignatureDoesNotMatch", err)
	}
}

func TestCanonical(t *testing.T) {
	for arn, want := range map[string]string{
		"arn:aws:iam::111122223333:user/dev/alice":                 "user dev/alice in 111122223333",
		"arn:aws:sts::111122223333:assumed-role/Admins/alice@corp": "role Admins (session alice@corp) in 111122223333",
		"arn:aws-cn:iam::111122223333:root":                        "root  in 111122223333",
	} {
		p, err := idpolicy.Canonical(arn)
		if err != nil || p.String() != want {
			t.Errorf("%s: %v %v, want %s", arn, p, err, want)
		}
	}
	for _, bad := range []string{"", "arn:aws:sts::1:assumed-role/Admins", "arn:aws:sts::1:assumed-role//s", "arn:aws:s3:::bucket", "arn:aws:iam::1:user/"} {
		if p, err := idpolicy.Canonical(bad); err == nil {
			t.Errorf("%q canonicalised to %+v", bad, p)
		}
	}
}

// Without an endpoint override, the SDK's resolver names the regional STS
// host, and a proof is accepted only for the host of the region its
// signature names (no network: Verify only).
func TestLoginProofGoesToTheSignedRegionsSTS(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	real := aws.Config{Region: "us-west-2", Credentials: credentials.NewStaticCredentialsProvider("AKIDEXAMPLE", "secret", "")}
	p, err := awsident.Prove(ctx, real, fleet, key, now)
	if err != nil {
		t.Fatal(err)
	}
	if p.URL != "https://sts.us-west-2.amazonaws.com/" {
		t.Fatalf("a proof for us-west-2 goes to %s", p.URL)
	}
	want := awsident.Want{Audience: fleet, KeyHash: key, Config: aws.Config{Region: "us-east-1"}, Now: now}
	if _, err := awsident.Verify(ctx, p, want); err != nil {
		t.Fatalf("a proof for us-west-2, verified by an issuer in us-east-1: %v", err)
	}
	p.URL, p.Headers["Host"] = "https://sts.us-east-1.amazonaws.com/", []string{"sts.us-east-1.amazonaws.com"}
	if _, err := awsident.Verify(ctx, p, want); !errors.Is(err, awsident.ErrProof) {
		t.Fatalf("a proof signed for us-west-2 sent to us-east-1's STS: %v, want refused", err)
	}
	for _, region := range []string{"evil.example.com/x", "us-east-1.attacker", "US-EAST-1"} {
		if _, err := awsident.Endpoint(ctx, want.Config, region); err == nil {
			t.Errorf("region %q resolved to an endpoint", region)
		}
	}
}
