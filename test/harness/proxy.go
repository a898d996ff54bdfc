package harness

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
)

// Verdict tells the proxy what to do with one request.
type Verdict int

const (
	Forward       Verdict = iota // pass it to moto
	ForwardThenDo                // pass it to moto, then run After and answer 502
	Throttle                     // answer ThrottlingException as Secrets Manager does
	ServerError                  // answer HTTP 500
)

// AWSProxy sits between the binary and moto: it records every call by its
// action (X-Amz-Target) and can fail or interrupt chosen calls.
type AWSProxy struct {
	URL string

	mu     sync.Mutex
	decide func(action string, n int) Verdict
	after  func(action string)
	calls  []string
	keys   map[string]bool
}

// StartAWSProxy proxies to target (moto's URL) until the test ends.
func StartAWSProxy(t testing.TB, target string) *AWSProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &AWSProxy{keys: map[string]bool{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		action := r.Header.Get("X-Amz-Target")
		if i := strings.LastIndexByte(action, '.'); i >= 0 {
			action = action[i+1:]
		}
		p.mu.Lock()
		n := 0
		for _, c := range p.calls {
			if c == action {
				n++
			}
		}
		p.calls = append(p.calls, action)
		if _, rest, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
			if id, _, ok := strings.Cut(rest, "/"); ok {
				p.keys[id] = true
			}
		}
		decide, after := p.decide, p.after
		p.mu.Unlock()
		v := Forward
		if decide != nil {
			v = decide(action, n)
		}
		switch v {
		case Throttle:
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
		case ServerError:
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"__type":"InternalServiceError","message":"injected"}`)
		case ForwardThenDo:
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			if after != nil {
				after(action)
			}
			w.WriteHeader(http.StatusBadGateway)
		default:
			rp.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	p.URL = srv.URL
	return p
}

// OnCall sets how calls are treated. decide is asked for every call with
// the action and how many calls of that action came before it (0 for the
// first); after runs for ForwardThenDo once moto has answered: the write is
// done but the client never hears of it (a crash right after the write).
func (p *AWSProxy) OnCall(decide func(action string, n int) Verdict, after func(action string)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.decide, p.after = decide, after
}

// Calls returns the actions seen so far, in order, and forgets them.
func (p *AWSProxy) Calls() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.calls
	p.calls = nil
	return c
}

// Count tallies actions.
func Count(calls []string) map[string]int {
	m := map[string]int{}
	for _, c := range calls {
		m[c]++
	}
	return m
}

// SawAccessKey reports whether any call was signed with access key id.
func (p *AWSProxy) SawAccessKey(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.keys[id]
}
