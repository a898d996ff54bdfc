// Package awsconf loads the AWS SDK configuration every joblet AWS client
// shares: the default credential chain, the SDK's endpoint variables
// (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_<SERVICE>), AWS_CA_BUNDLE, and
// bounded retries with jittered exponential backoff.
package awsconf

import (
	"context"
	"fmt"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
)

// Options tune the client. Zero values take the defaults.
type Options struct {
	Region string
	// MaxAttempts per call, first try included (default 8); throttling,
	// 5xx and connection errors are retried.
	MaxAttempts int
	MaxBackoff  time.Duration // default 4s
	// AttemptTimeout bounds one HTTP attempt (default 10s), so a
	// black-holed endpoint cannot hold a call for the whole deadline.
	AttemptTimeout time.Duration
}

// Load builds the configuration.
func Load(ctx context.Context, o Options) (aws.Config, error) {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = 4 * time.Second
	}
	if o.AttemptTimeout == 0 {
		o.AttemptTimeout = 10 * time.Second
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
		return aws.Config{}, fmt.Errorf("load AWS configuration: %w", err)
	}
	return cfg, nil
}
