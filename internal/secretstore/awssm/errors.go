package awssm

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	"github.com/aws/smithy-go"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Causes a store call can fail with; errors.Is works on every error the
// store returns, so callers and tests can branch on the cause.
var (
	ErrNoCredentials = errors.New("no AWS credentials")
	ErrAccessDenied  = secretstore.ErrAccessDenied
	ErrUnreachable   = secretstore.Kind("Secrets Manager unreachable", secretstore.ErrTemporary)
	ErrServerError   = secretstore.Kind("Secrets Manager failed", secretstore.ErrTemporary)
	ErrThrottled     = secretstore.Kind("throttled by Secrets Manager", secretstore.ErrThrottled)
	ErrDeleted       = errors.New("secret scheduled for deletion")
)

// StoreError says which action on which secrets failed, why, and what to do.
type StoreError struct {
	Cause   error // one of the sentinels above, or nil when unclassified
	Action  string
	Secrets []string
	Detail  string
	Hint    string
	Err     error
}

func (e *StoreError) Error() string {
	var b strings.Builder
	if e.Action != "" {
		b.WriteString("secretsmanager:" + e.Action)
		if len(e.Secrets) > 0 {
			b.WriteString(" on " + strings.Join(e.Secrets, ", "))
		}
		b.WriteString(": ")
	}
	if e.Cause != nil {
		b.WriteString(e.Cause.Error() + ": ")
	}
	b.WriteString(e.Detail)
	if e.Hint != "" {
		b.WriteString(". " + e.Hint)
	}
	return b.String()
}

func (e *StoreError) Unwrap() []error { return []error{e.Cause, e.Err} }

// deniedAction reports whether err is an access denial of action.
func deniedAction(err error, action string) bool {
	var se *StoreError
	return errors.As(err, &se) && se.Action == action && errors.Is(se.Cause, ErrAccessDenied)
}

// explain classifies an SDK error. It never turns an error into "not
// found": only the service's own ResourceNotFoundException means that, and
// callers check for it before calling here.
func (s *Store) explain(err error, action string, secrets ...string) error {
	e := &StoreError{Action: action, Secrets: secrets, Err: err, Detail: err.Error()}
	var api smithy.APIError
	var re *awshttp.ResponseError
	status := 0
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	code := ""
	if errors.As(err, &api) {
		code = api.ErrorCode()
		if msg := api.ErrorMessage(); msg != "" {
			e.Detail = code + ": " + msg
		}
	}
	var nerr net.Error
	msg := err.Error()
	switch {
	case errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled):
		// The command's own deadline (an HTTP attempt's timeout is a
		// net.Error, below).
		e.Detail = "the command's deadline passed while waiting for Secrets Manager"
		e.Hint = "raise --timeout / JOBLET_TIMEOUT if the store is slow or throttled"
	case strings.Contains(msg, "get credentials") || strings.Contains(msg, "failed to refresh cached credentials") ||
		strings.Contains(msg, "no EC2 IMDS role found") || strings.Contains(msg, "static credentials are empty"):
		e.Cause = ErrNoCredentials
		e.Hint = "Give the instance a role (instance profile) with the joblet Secrets Manager policy, or set AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	case code == "AccessDeniedException" || code == "AccessDenied" || status == 403 ||
		strings.Contains(msg, "is not authorized to perform"):
		e.Cause = ErrAccessDenied
		e.Hint = fmt.Sprintf("Allow secretsmanager:%s on these secrets in the IAM policy of the role joblet runs with (see the spec's IAM policy)", action)
		if code == "" || code == "UnknownError" || strings.HasPrefix(code, "<") {
			e.Detail = "HTTP 403: " + firstLine(msg)
		}
	case code == "ThrottlingException" || code == "Throttling" || code == "TooManyRequestsException" || status == 429 ||
		strings.Contains(msg, "retry quota exceeded") || strings.Contains(msg, "exceeded maximum number of attempts") && (status == 429 || strings.Contains(msg, "Throttl")):
		e.Cause = ErrThrottled
		e.Hint = "Requests were retried with backoff and still throttled: re-run later, or start fewer nodes at once"
		s.throttledAt.Store(time.Now().UnixNano())
	case pendingDeletion(code, msg):
		e.Cause = ErrDeleted
		e.Hint = "Restore it with `aws secretsmanager restore-secret --secret-id NAME`, or wait until the deletion completes"
	case errors.As(err, &nerr) || strings.Contains(msg, "connection refused") || strings.Contains(msg, "no such host") ||
		strings.Contains(msg, "dial tcp") || strings.Contains(msg, "connection reset") || strings.Contains(msg, "EOF"):
		e.Cause = ErrUnreachable
		e.Detail = "cannot reach " + s.endpoint + ": " + firstLine(msg)
		e.Hint = "Check the region, the network path (security groups, NAT or a VPC endpoint for Secrets Manager) and AWS_ENDPOINT_URL_SECRETS_MANAGER if set"
	case status >= 500:
		e.Cause = ErrServerError
		e.Hint = fmt.Sprintf("Secrets Manager answered HTTP %d after retries: re-run later", status)
	}
	return e
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// notice makes a call's retryer note a throttled attempt (Throttled), one
// the client retries and then passes included: a bootstrap whose first
// read passed on a retry is in a burst as much as one whose read failed.
func (s *Store) notice(o *sm.Options) {
	if o.Retryer != nil {
		o.Retryer = noticing{Retryer: o.Retryer, s: s}
	}
}

// noticing is the client's retryer, noting throttled attempts.
type noticing struct {
	aws.Retryer
	s *Store
}

func (n noticing) IsErrorRetryable(err error) bool {
	if retry.IsErrorThrottles(retry.DefaultThrottles).IsErrorThrottle(err) == aws.TrueTernary {
		n.s.throttledAt.Store(time.Now().UnixNano())
	}
	return n.Retryer.IsErrorRetryable(err)
}

// GetAttemptToken keeps the client retryer's own (aws.RetryerV2).
func (n noticing) GetAttemptToken(ctx context.Context) (func(error) error, error) {
	if v2, ok := n.Retryer.(aws.RetryerV2); ok {
		return v2.GetAttemptToken(ctx)
	}
	return n.Retryer.GetInitialToken(), nil
}
