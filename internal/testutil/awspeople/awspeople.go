// Package awspeople makes, in a moto started with request signatures
// checked, the AWS identities the identity tests sign as: two IAM users and
// a session of a role one of them assumes.
package awspeople

import (
	"context"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/aws-sdk-go-v2/service/sts"

	"github.com/ehsaniara/joblet/test/harness"
)

// SetupCalls are the calls moto accepts unsigned (creating the people);
// every call after them must be signed by a key moto issued, as AWS
// requires: otherwise moto accepts any signature and a test of proofs
// proves nothing.
const SetupCalls = 10

// Account is moto's account.
const Account = "123456789012"

// People signs as alice, as bob, as bob's session "bob-laptop" of the
// role admins (path /people/), and as carol (whom no policy names).
type People struct {
	Alice, Bob, BobAsAdmin, Carol aws.Config
}

// Env is the environment a process signs as cfg with (rnx login): its
// credentials, region, and STS at the moto cfg points at.
func Env(cfg aws.Config) []string {
	c, err := cfg.Credentials.Retrieve(context.Background())
	if err != nil {
		panic(err) // static credentials
	}
	return []string{"AWS_ACCESS_KEY_ID=" + c.AccessKeyID, "AWS_SECRET_ACCESS_KEY=" + c.SecretAccessKey, "AWS_SESSION_TOKEN=" + c.SessionToken,
		"AWS_REGION=" + cfg.Region, "AWS_ENDPOINT_URL_STS=" + *cfg.BaseEndpoint, "AWS_CONFIG_FILE=/dev/null", "AWS_SHARED_CREDENTIALS_FILE=/dev/null"}
}

// Moto starts moto with signatures checked after SetupCalls, for a
// package's TestMain; it exits the process when moto cannot start.
func Moto() *harness.Moto {
	m, err := harness.StartMoto("INITIAL_NO_AUTH_ACTION_COUNT=" + strconv.Itoa(SetupCalls))
	if err != nil {
		println(err.Error())
		os.Exit(1)
	}
	return m
}

// Config is a config for moto at url signing with creds.
func Config(url string, creds aws.CredentialsProvider) aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: creds, BaseEndpoint: aws.String(url)}
}

var (
	once   sync.Once
	people *People
	failed error
)

// Make creates the people in the moto at url, once per process.
func Make(t testing.TB, url string) *People {
	t.Helper()
	once.Do(func() { people, failed = create(url) })
	if failed != nil {
		t.Fatal(failed)
	}
	return people
}

func create(url string) (*People, error) {
	ctx := context.Background()
	ic := iam.NewFromConfig(Config(url, credentials.NewStaticCredentialsProvider("AKIDBOOTSTRAP", "bootstrap", "")))
	allow := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"sts:*","Resource":"*"}]}`
	user := func(name string) (aws.Config, error) {
		if _, err := ic.CreateUser(ctx, &iam.CreateUserInput{UserName: aws.String(name)}); err != nil {
			return aws.Config{}, err
		}
		k, err := ic.CreateAccessKey(ctx, &iam.CreateAccessKeyInput{UserName: aws.String(name)})
		if err != nil {
			return aws.Config{}, err
		}
		if _, err := ic.PutUserPolicy(ctx, &iam.PutUserPolicyInput{UserName: aws.String(name), PolicyName: aws.String("sts"), PolicyDocument: aws.String(allow)}); err != nil {
			return aws.Config{}, err
		}
		return Config(url, credentials.NewStaticCredentialsProvider(*k.AccessKey.AccessKeyId, *k.AccessKey.SecretAccessKey, "")), nil
	}
	p := &People{}
	var err error
	if p.Alice, err = user("alice"); err != nil {
		return nil, err
	}
	if p.Bob, err = user("bob"); err != nil {
		return nil, err
	}
	if p.Carol, err = user("carol"); err != nil {
		return nil, err
	}
	trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"AWS":"arn:aws:iam::` + Account + `:user/bob"},"Action":"sts:AssumeRole"}]}`
	if _, err := ic.CreateRole(ctx, &iam.CreateRoleInput{RoleName: aws.String("admins"), Path: aws.String("/people/"), AssumeRolePolicyDocument: aws.String(trust)}); err != nil {
		return nil, err
	}
	out, err := sts.NewFromConfig(p.Bob).AssumeRole(ctx, &sts.AssumeRoleInput{RoleArn: aws.String("arn:aws:iam::" + Account + ":role/people/admins"), RoleSessionName: aws.String("bob-laptop")})
	if err != nil {
		return nil, err
	}
	c := out.Credentials
	p.BobAsAdmin = Config(url, credentials.NewStaticCredentialsProvider(*c.AccessKeyId, *c.SecretAccessKey, *c.SessionToken))
	return p, nil
}
