package awssm

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

// Options tune the client. Zero values take the defaults.
type Options struct {
	Region string
	// MaxAttempts per call, first try included; throttling, 5xx and
	// connection errors are retried with jittered exponential backoff.
	MaxAttempts int
	MaxBackoff  time.Duration
	// AttemptTimeout bounds one HTTP attempt, so a black-holed endpoint
	// cannot hold a call for the whole command deadline.
	AttemptTimeout time.Duration
	Create         CreateOptions
}

// Open builds a Store from the default AWS configuration: the default
// credential chain and the SDK's endpoint variables (AWS_ENDPOINT_URL,
// AWS_ENDPOINT_URL_SECRETS_MANAGER).
func Open(ctx context.Context, o Options, log *slog.Logger) (*Store, error) {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 4 * time.Second
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	if o.Region == "" {
		return nil, fmt.Errorf("no AWS region for Secrets Manager: set --region, EC2_REGION or AWS_REGION (on EC2 it is read from the instance metadata)")
	}
	cfg, err := config.LoadDefaultConfig(ctx,
		config.WithRegion(o.Region),
		// The SDK's buildable client keeps AWS_CA_BUNDLE working.
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(o.AttemptTimeout)),
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = o.MaxBackoff
				// No client-side retry quota: under a fleet-wide burst it
				// would fail a node after a few throttles; attempts,
				// backoff and the command's deadline bound the retries.
				so.RateLimiter = ratelimit.None
			})
		}),
	)
	if err != nil {
		return nil, fmt.Errorf("load AWS configuration: %w", err)
	}
	endpoint := "Secrets Manager in " + o.Region
	if e := firstNonEmpty(os.Getenv("AWS_ENDPOINT_URL_SECRETS_MANAGER"), os.Getenv("AWS_ENDPOINT_URL")); e != "" {
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

func firstNonEmpty(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
