package test

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/aws/aws-lambda-go/events"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/awspeople"
	"github.com/ehsaniara/joblet/test/harness"
)

// functionURL stands in for what AWS puts in front of a Lambda function
// URL (the emulator has none): it turns each HTTPS request into the
// function URL event (payload 2.0) and the handler's answer back into the
// HTTP response. The handler is the real binary under the AWS Lambda
// Runtime Interface Emulator.
func functionURL(t *testing.T, fn *harness.Lambda) *httptest.Server {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		ev := events.LambdaFunctionURLRequest{Version: "2.0", RawPath: r.URL.Path, RawQueryString: r.URL.RawQuery,
			Headers: map[string]string{}, Body: base64.StdEncoding.EncodeToString(body), IsBase64Encoded: true,
			RequestContext: events.LambdaFunctionURLRequestContext{
				HTTP: events.LambdaFunctionURLRequestContextHTTPDescription{Method: r.Method, Path: r.URL.Path, SourceIP: "127.0.0.1"}}}
		for k := range r.Header {
			ev.Headers[strings.ToLower(k)] = r.Header.Get(k)
		}
		out, err := fn.Invoke(ev)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		var resp events.LambdaFunctionURLResponse
		if err := json.Unmarshal(out, &resp); err != nil {
			http.Error(w, "not a function URL response: "+string(out), http.StatusBadGateway)
			return
		}
		for k, v := range resp.Headers {
			w.Header().Set(k, v)
		}
		w.WriteHeader(resp.StatusCode)
		b := []byte(resp.Body)
		if resp.IsBase64Encoded {
			b, _ = base64.StdEncoding.DecodeString(resp.Body)
		}
		w.Write(b)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// Issue 26's issuer as an AWS Lambda function: the same joblet binary,
// started by the Runtime Interface Emulator, serves rnx login with its
// store and STS from the environment; alice logs in as a developer, bob as
// a reader, bob's admins session as admin, the node accepts each for its
// role, carol is refused naming the policy.
func TestLoginThroughTheLambdaHandler(t *testing.T) {
	f := startLoginFleet(t)
	pm, pp := people(t)
	env := harness.Env(append(harness.AWSEnv(motoFor(t).URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+t.TempDir(),
		"AWS_ENDPOINT_URL_STS="+pm.URL, "AWS_LAMBDA_FUNCTION_TIMEOUT=30")...)
	fn := harness.StartLambda(t, env, f.joblet, "issuer")
	front := functionURL(t, fn)
	ca := filepath.Join(t.TempDir(), "front.pem")
	os.WriteFile(ca, pki.EncodeCert(front.Certificate()), 0o600)
	for _, c := range []struct {
		who, person string
		aws         []string
		role        pki.Role
		runs        bool
	}{
		{"alice", "arn:aws:iam::123456789012:user/alice", awspeople.Env(pp.Alice), pki.Developer, true},
		{"bob", "arn:aws:iam::123456789012:user/bob", awspeople.Env(pp.Bob), pki.Reader, false},
		{"bob as admins", "arn:aws:iam::123456789012:role/admins#bob-laptop", awspeople.Env(pp.BobAsAdmin), pki.Admin, true},
	} {
		cfg := f.configFor(t)
		env := harness.Env(c.aws...)
		r := harness.Run(t, env, f.rnx, "--config", cfg, "login", "--issuer", front.URL, "--issuer-ca", ca)
		if r.Code != 0 || !strings.Contains(r.Stdout, "logged in as "+c.person+" ("+string(c.role)+")") {
			t.Fatalf("%s: rnx login through the Lambda handler: %s\n%s", c.who, r, fn.Proc.Output())
		}
		if r := harness.Run(t, env, f.rnx, "--config", cfg, "job", "list"); r.Code != 0 {
			t.Errorf("%s: job list with the certificate from the Lambda handler: %s", c.who, r)
		}
		if r := harness.Run(t, env, f.rnx, "--config", cfg, "job", "run", "true"); (r.Code == 0) != c.runs {
			t.Errorf("%s (%s): job run with the certificate from the Lambda handler: %s", c.who, c.role, r)
		}
	}
	r := harness.Run(t, harness.Env(awspeople.Env(pp.Carol)...), f.rnx, "--config", f.configFor(t), "login", "--issuer", front.URL, "--issuer-ca", ca)
	if r.Code == 0 || !strings.Contains(r.Stderr, "identity policy") {
		t.Errorf("carol through the Lambda handler: %s", r)
	}
	if out := fn.Proc.Output(); !strings.Contains(out, "serving as an AWS Lambda function") {
		t.Errorf("the handler did not run in Lambda mode:\n%s", out)
	}
}
