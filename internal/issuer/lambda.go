package issuer

import (
	"bytes"
	"context"
	"encoding/base64"
	"net/http"
	"strings"

	"github.com/aws/aws-lambda-go/events"
)

// FunctionURL is the issuer as an AWS Lambda function behind a function
// URL in its default (BUFFERED) invoke mode: each event becomes one
// request to ServeHTTP, its answer one response. (aws-lambda-go's
// lambdaurl answers in the streaming mode's format, which a buffered
// function URL would pass on as the body.)
func (is *Issuer) FunctionURL(ctx context.Context, ev *events.LambdaFunctionURLRequest) (*events.LambdaFunctionURLResponse, error) {
	body := []byte(ev.Body)
	if ev.IsBase64Encoded {
		var err error
		if body, err = base64.StdEncoding.DecodeString(ev.Body); err != nil {
			return &events.LambdaFunctionURLResponse{StatusCode: http.StatusBadRequest, Body: "the body is not base64"}, nil
		}
	}
	path := ev.RawPath
	if path == "" {
		path = "/"
	}
	req, err := http.NewRequestWithContext(ctx, ev.RequestContext.HTTP.Method, path, bytes.NewReader(body))
	if err != nil {
		return &events.LambdaFunctionURLResponse{StatusCode: http.StatusBadRequest, Body: err.Error()}, nil
	}
	for k, v := range ev.Headers {
		req.Header.Set(k, v)
	}
	req.RemoteAddr = ev.RequestContext.HTTP.SourceIP
	w := &recorder{header: http.Header{}, code: http.StatusOK}
	is.ServeHTTP(w, req)
	resp := &events.LambdaFunctionURLResponse{StatusCode: w.code, Headers: map[string]string{}, Body: w.body.String()}
	for k, v := range w.header {
		resp.Headers[k] = strings.Join(v, ",")
	}
	return resp, nil
}

// recorder keeps what ServeHTTP writes.
type recorder struct {
	header http.Header
	code   int
	body   bytes.Buffer
	wrote  bool
}

func (r *recorder) Header() http.Header { return r.header }
func (r *recorder) WriteHeader(code int) {
	if !r.wrote {
		r.code, r.wrote = code, true
	}
}
func (r *recorder) Write(b []byte) (int, error) {
	r.WriteHeader(http.StatusOK)
	return r.body.Write(b)
}
