package awssm

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"

	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"

	"github.com/ehsaniara/joblet/internal/awsconf"
)

// Options tune the client. Zero values take the defaults.
type Options struct {
	awsconf.Options
	Create CreateOptions
}

// Open builds a Store from the default AWS configuration (awsconf): the
// default credential chain and the SDK's endpoint variables
// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_SECRETS_MANAGER).
func Open(ctx context.Context, o Options, log *slog.Logger) (*Store, error) {
	if o.Region == "" {
		return nil, fmt.Errorf("no AWS region for Secrets Manager: set --region, EC2_REGION or AWS_REGION (on EC2 it is read from the instance metadata)")
	}
	cfg, err := awsconf.Load(ctx, o.Options)
	if err != nil {
		return nil, err
	}
	endpoint := "Secrets Manager in " + o.Region
	if e := cmp.Or(os.Getenv("AWS_ENDPOINT_URL_SECRETS_MANAGER"), os.Getenv("AWS_ENDPOINT_URL")); e != "" {
		endpoint = "Secrets Manager at " + e
	}
	s := New(sm.NewFromConfig(cfg), endpoint, log).WithCreateOptions(o.Create)
	// Fail early and clearly when no credentials can be found at all,
	// before any secret is touched.
	if _, err := cfg.Credentials.Retrieve(ctx); err != nil {
		return nil, &StoreError{Cause: ErrNoCredentials, Detail: firstLine(err.Error()),
			Hint: "Give the instance a role (instance profile) with the joblet Secrets Manager policy, or set AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY", Err: err}
	}
	return s, nil
}

// Describe names the store for humans.
func (s *Store) Describe() string { return s.endpoint }
