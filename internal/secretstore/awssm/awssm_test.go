package awssm_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
	"github.com/ehsaniara/joblet/internal/secretstore/storetest"
	"github.com/ehsaniara/joblet/test/harness"
)

var moto *harness.Moto

func TestMain(m *testing.M) {
	var err error
	if moto, err = harness.StartMoto(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	moto.Stop()
	os.Exit(code)
}

func client() *sm.Client {
	return sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(moto.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
}

// The Store contract holds against Secrets Manager as moto emulates it.
func TestContractAgainstMoto(t *testing.T) {
	storetest.Run(t, func(t *testing.T) secretstore.Store {
		moto.Reset(t)
		return awssm.New(client(), "moto", nil)
	}, "joblet")
}

// counting wraps the client to count calls (STYLE: a recording decorator
// over the narrow API interface).
type counting struct {
	awssm.API
	batch, get, list atomic.Int32
}

func (c *counting) ListSecrets(ctx context.Context, in *sm.ListSecretsInput, o ...func(*sm.Options)) (*sm.ListSecretsOutput, error) {
	c.list.Add(1)
	return c.API.ListSecrets(ctx, in, o...)
}

func (c *counting) BatchGetSecretValue(ctx context.Context, in *sm.BatchGetSecretValueInput, o ...func(*sm.Options)) (*sm.BatchGetSecretValueOutput, error) {
	c.batch.Add(1)
	return c.API.BatchGetSecretValue(ctx, in, o...)
}

func (c *counting) GetSecretValue(ctx context.Context, in *sm.GetSecretValueInput, o ...func(*sm.Options)) (*sm.GetSecretValueOutput, error) {
	c.get.Add(1)
	return c.API.GetSecretValue(ctx, in, o...)
}

// More names than one batch holds are read in batches of 20, and PutSecret
// keeps the replaced value as AWSPREVIOUS.
func TestBatchesAndPrevious(t *testing.T) {
	moto.Reset(t)
	c := &counting{API: client()}
	st := awssm.New(c, "moto", nil)
	ctx := context.Background()
	var names []string
	for i := 0; i < 25; i++ {
		n := fmt.Sprintf("joblet/s%02d", i)
		names = append(names, n)
		if i%2 == 0 {
			if err := st.Create(ctx, secretstore.Secret{Name: n, Value: "v" + n}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := st.Get(ctx, names)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 13 || got["joblet/s24"] != "vjoblet/s24" {
		t.Fatalf("got %d secrets: %v", len(got), got)
	}
	if c.batch.Load() != 2 || c.get.Load() != 0 {
		t.Fatalf("batch calls %d, get calls %d; want 2 and 0", c.batch.Load(), c.get.Load())
	}
	if err := st.Put(ctx, "joblet/s00", "new"); err != nil {
		t.Fatal(err)
	}
	prev, err := client().GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: aws.String("joblet/s00"), VersionStage: aws.String("AWSPREVIOUS")})
	if err != nil || aws.ToString(prev.SecretString) != "vjoblet/s00" {
		t.Fatalf("AWSPREVIOUS: %v %v", prev, err)
	}
}

// What a node watches (the CA, its key, the bundle, the CRL) is checked for
// change in one ListSecrets call that reads no value, and only the fleet's
// prefix is listed: another fleet's secret of the same name is not taken.
func TestVersionsIsOneCall(t *testing.T) {
	moto.Reset(t)
	c := &counting{API: client()}
	st := awssm.New(c, "moto", nil)
	ctx := context.Background()
	watched := []string{"joblet/ca-cert", "joblet/ca-key", "joblet/ca-bundle", "joblet/crl"}
	for _, n := range append(watched[:3:3], "jobletx/ca-cert", "joblet/ca-rotation/01") {
		if err := st.Create(ctx, secretstore.Secret{Name: n, Value: "v"}); err != nil {
			t.Fatal(err)
		}
	}
	v, err := st.Versions(ctx, watched)
	if err != nil {
		t.Fatal(err)
	}
	if len(v) != 3 || v["joblet/crl"] != "" || c.list.Load() != 1 || c.get.Load()+c.batch.Load() != 0 {
		t.Fatalf("versions %v after %d ListSecrets, %d reads; want 3 names from 1 call and no read", v, c.list.Load(), c.get.Load()+c.batch.Load())
	}
}

// An unreachable endpoint is an error with its cause, never "empty".
func TestUnreachableIsNotEmpty(t *testing.T) {
	c := sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(harness.ClosedURL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""), RetryMaxAttempts: 1})
	_, err := awssm.New(c, "closed", nil).Get(context.Background(), []string{"joblet/ca-cert"})
	if !errors.Is(err, awssm.ErrUnreachable) {
		t.Fatalf("err = %v, want ErrUnreachable", err)
	}
}

// A store whose batch read was throttled past its retries says so
// (Throttled: a bootstrap then knows it is in a burst), and its next batch
// reads make one attempt, not two, before reading secret by secret.
func TestThrottledBatchIsRemembered(t *testing.T) {
	moto.Reset(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	proxy.OnCall(func(action string, _ int) harness.Verdict {
		if action == "BatchGetSecretValue" {
			return harness.Throttle
		}
		return harness.Forward
	}, nil)
	s := awssm.New(sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(proxy.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}), "proxy", nil)
	names := []string{"joblet/a", "joblet/b", "joblet/c", "joblet/d", "joblet/e"}
	if s.Throttled() {
		t.Fatal("a new store reports a throttle")
	}
	for i, want := range []int{2, 1} {
		if _, err := s.Get(context.Background(), names); err != nil {
			t.Fatal(err)
		}
		if c := harness.Count(proxy.Calls()); c["BatchGetSecretValue"] != want || c["GetSecretValue"] != len(names) {
			t.Fatalf("read %d: calls %v, want %d batch attempts then %d single reads", i+1, c, want, len(names))
		}
		if !s.Throttled() {
			t.Fatalf("read %d: the throttle is not reported", i+1)
		}
	}
}

// A throttled attempt the client retried and then passed is noticed too: a
// process whose first read passed on a retry is in a burst all the same.
func TestThrottleRetriedAndPassedIsNoticed(t *testing.T) {
	moto.Reset(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	proxy.OnCall(func(action string, n int) harness.Verdict {
		if action == "BatchGetSecretValue" && n == 0 {
			return harness.Throttle
		}
		return harness.Forward
	}, nil)
	s := awssm.New(sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(proxy.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}), "proxy", nil)
	if _, err := s.Get(context.Background(), []string{"joblet/a", "joblet/b", "joblet/c", "joblet/d", "joblet/e"}); err != nil {
		t.Fatal(err)
	}
	if c := harness.Count(proxy.Calls()); c["BatchGetSecretValue"] != 2 || c["GetSecretValue"] != 0 {
		t.Fatalf("calls %v, want the batch read passing on its retry", c)
	}
	if !s.Throttled() {
		t.Fatal("the throttled attempt was not noticed")
	}
}

// A read anchored by its first name (GetAnchored), with the batch read
// throttled: its batch read is not retried, and where the anchor is missing
// it stops after one GetSecretValue (a burst of nodes finding an empty
// store); where it exists it reads every name as Get does; unanchored, Get
// reads every name either way.
func TestAnchoredReadStopsAtAMissingAnchor(t *testing.T) {
	moto.Reset(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	proxy.OnCall(func(action string, _ int) harness.Verdict {
		if action == "BatchGetSecretValue" {
			return harness.Throttle
		}
		return harness.Forward
	}, nil)
	s := awssm.New(sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(proxy.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}), "proxy", nil)
	ctx := context.Background()
	names := []string{"joblet/a", "joblet/b", "joblet/c", "joblet/d", "joblet/e"}
	if err := awssm.New(client(), "moto", nil).Create(ctx, secretstore.Secret{Name: "joblet/c", Value: "c"}); err != nil {
		t.Fatal(err)
	}
	proxy.Calls()
	got, err := s.GetAnchored(ctx, names)
	if c := harness.Count(proxy.Calls()); err != nil || len(got) != 0 || c["GetSecretValue"] != 1 || c["BatchGetSecretValue"] != 1 {
		t.Fatalf("no anchor: got %v, %v after %v; want nothing after one batch attempt (not retried) and one GetSecretValue", got, err, c)
	}
	got, err = s.Get(ctx, names)
	if c := harness.Count(proxy.Calls()); err != nil || got["joblet/c"] != "c" || c["GetSecretValue"] != len(names) {
		t.Fatalf("Get: got %v, %v after %v; want joblet/c after a read per name", got, err, c)
	}
	if err := awssm.New(client(), "moto", nil).Create(ctx, secretstore.Secret{Name: "joblet/a", Value: "a"}); err != nil {
		t.Fatal(err)
	}
	got, err = s.GetAnchored(ctx, names)
	if c := harness.Count(proxy.Calls()); err != nil || len(got) != 2 || got["joblet/c"] != "c" || c["GetSecretValue"] != len(names) {
		t.Fatalf("with its anchor: got %v, %v after %v; want a and c after a read per name", got, err, c)
	}
}

// A store that was throttled makes one attempt per create, not two: its
// caller (a bootstrap in a burst) paces its own tries to the create quota
// instead of waiting up to 2 s for the client's retry.
func TestThrottledStoreCreatesOnce(t *testing.T) {
	moto.Reset(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	proxy.OnCall(func(action string, _ int) harness.Verdict {
		if action == "CreateSecret" {
			return harness.Throttle
		}
		return harness.Forward
	}, nil)
	s := awssm.New(sm.New(sm.Options{Region: "us-east-1", BaseEndpoint: aws.String(proxy.URL),
		Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")}), "proxy", nil)
	for i, want := range []int{2, 1} {
		err := s.Create(context.Background(), secretstore.Secret{Name: "joblet/a", Value: "a"})
		if !errors.Is(err, secretstore.ErrThrottled) {
			t.Fatalf("create %d: %v, want throttled", i+1, err)
		}
		if c := harness.Count(proxy.Calls()); c["CreateSecret"] != want {
			t.Fatalf("create %d: calls %v, want %d CreateSecret", i+1, c, want)
		}
	}
}

// A secret created with replicas (--replica-regions) is removed with them:
// Secrets Manager refuses to delete a secret that still has replicas.
func TestRemoveReplicated(t *testing.T) {
	moto.Reset(t)
	ctx := context.Background()
	c := client()
	st := awssm.New(c, "moto", nil).WithCreateOptions(awssm.CreateOptions{ReplicaRegions: []string{"us-west-2"}})
	name := "joblet/client-reissue/developer-1"
	if err := st.Create(ctx, secretstore.Secret{Name: name, Value: "v"}); err != nil {
		t.Fatal(err)
	}
	d, err := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(name)})
	if err != nil || len(d.ReplicationStatus) != 1 {
		t.Fatalf("the secret was not replicated: %+v %v", d, err)
	}
	if err := st.Remove(ctx, name); err != nil {
		t.Fatal(err)
	}
	got, err := st.Get(ctx, []string{name})
	if err != nil || len(got) != 0 {
		t.Fatalf("after Remove: %v %v", got, err)
	}
	west := sm.New(sm.Options{Region: "us-west-2", BaseEndpoint: aws.String(moto.URL), Credentials: credentials.NewStaticCredentialsProvider("test", "test", "")})
	if _, err := west.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: aws.String(name)}); err == nil {
		t.Fatal("the replica in us-west-2 is still there")
	}
	if err := st.Remove(ctx, name); err != nil {
		t.Fatalf("removing it again: %v", err)
	}
}
