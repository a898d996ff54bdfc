package harness

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Verdict tells the proxy what to do with one request.
type Verdict int

const (
	Forward       Verdict = iota // pass it to moto
	ForwardThenDo                // pass it to moto, then run After and answer 502
	Throttle                     // answer ThrottlingException as Secrets Manager does
	ServerError                  // answer HTTP 500
	Unavailable                  // answer HTTP 503
	Slow                         // wait a second, then forward
	Reset                        // close the connection without an answer
	Truncate                     // forward, but cut moto's answer in half
)

// AWSProxy sits between the binary and moto: it records every call by its
// action (X-Amz-Target) and can fail or interrupt chosen calls.
type AWSProxy struct {
	URL string

	mu        sync.Mutex
	decide    func(action string, n int) Verdict
	after     func(action string)
	calls     []string
	recorded  []Call
	regions   map[string]bool
	quotas    map[string]*bucket
	throttled map[string]int
	keys      map[string]bool
}

// StartAWSProxy proxies to target (moto's URL) until the test ends.
func StartAWSProxy(t testing.TB, target string) *AWSProxy {
	u, _ := url.Parse(target)
	rp := httputil.NewSingleHostReverseProxy(u)
	p := &AWSProxy{keys: map[string]bool{}, regions: map[string]bool{}, throttled: map[string]int{}}
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
		p.recorded = append(p.recorded, Call{Action: action, Secrets: secretIDs(r)})
		if _, rest, ok := strings.Cut(r.Header.Get("Authorization"), "Credential="); ok {
			// Credential=KEY/DATE/REGION/SERVICE/aws4_request
			if f := strings.Split(rest, "/"); len(f) > 2 {
				p.keys[f[0]] = true
				p.regions[f[2]] = true
			}
		}
		// Decisions are made under the lock, one at a time, so a decide
		// function may keep its own counters.
		v := Forward
		if b := p.quotas[action]; b != nil && !b.take(time.Now()) {
			v = Throttle
			p.throttled[action]++
		} else if p.decide != nil {
			v = p.decide(action, n)
		}
		after := p.after
		p.mu.Unlock()
		switch v {
		case Throttle:
			w.Header().Set("Content-Type", "application/x-amz-json-1.1")
			w.Header().Set("X-Amzn-ErrorType", "ThrottlingException")
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"__type":"ThrottlingException","message":"Rate exceeded"}`)
		case ServerError:
			w.WriteHeader(http.StatusInternalServerError)
			io.WriteString(w, `{"__type":"InternalServiceError","message":"injected"}`)
		case Unavailable:
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, `{"__type":"ServiceUnavailable","message":"injected"}`)
		case Slow:
			time.Sleep(time.Second)
			rp.ServeHTTP(w, r)
		case Reset:
			if hj, ok := w.(http.Hijacker); ok {
				if conn, _, err := hj.Hijack(); err == nil {
					if tc, ok := conn.(*net.TCPConn); ok {
						tc.SetLinger(0) // RST, not FIN
					}
					conn.Close()
				}
			}
		case Truncate:
			rec := httptest.NewRecorder()
			rp.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			if hj, ok := w.(http.Hijacker); ok {
				if conn, buf, err := hj.Hijack(); err == nil {
					fmt.Fprintf(buf, "HTTP/1.1 %d OK\r\nContent-Type: application/x-amz-json-1.1\r\nContent-Length: %d\r\n\r\n", rec.Code, len(body))
					buf.Write(body[:len(body)/2])
					buf.Flush()
					conn.Close()
				}
			}
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

// OnCall sets how calls are treated. decide is asked, one call at a time,
// for every call with
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

// RunKilledAt runs cmd with the proxy killing it (SIGKILL) right after moto
// has answered the call for which at returns true; the client never hears
// the answer. It reports whether the kill happened.
func (p *AWSProxy) RunKilledAt(t testing.TB, cmd *exec.Cmd, at func(action string, n int) bool) bool {
	t.Helper()
	// The proxy's handler runs on its own goroutine: share the process and
	// the verdict through atomics.
	var proc atomic.Pointer[os.Process]
	var killed atomic.Bool
	p.OnCall(func(action string, n int) Verdict {
		if at(action, n) {
			return ForwardThenDo
		}
		return Forward
	}, func(string) {
		if pr := proc.Load(); pr != nil {
			killed.Store(true) // first: Wait may return before Kill does
			pr.Kill()
		}
	})
	defer p.OnCall(nil, nil)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	proc.Store(cmd.Process)
	cmd.Wait()
	return killed.Load()
}

// Call is one recorded call: its action and the secrets it named.
type Call struct {
	Action  string
	Secrets []string
}

// Recorded returns every call seen so far, with its secrets, and forgets them.
func (p *AWSProxy) Recorded() []Call {
	p.mu.Lock()
	defer p.mu.Unlock()
	c := p.recorded
	p.recorded = nil
	return c
}

// secretIDs reads the secrets a Secrets Manager request names, leaving the
// body for moto.
func secretIDs(r *http.Request) []string {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return nil
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var in struct {
		SecretId, Name string
		SecretIdList   []string
	}
	json.Unmarshal(body, &in)
	out := in.SecretIdList
	for _, s := range []string{in.SecretId, in.Name} {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// SawRegion reports whether any call was signed for region.
func (p *AWSProxy) SawRegion(region string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.regions[region]
}

// bucket is a token bucket: rate tokens a second, holding at most one
// second's worth, as AWS describes its API quotas.
type bucket struct {
	rate, tokens float64
	last         time.Time
}

func (b *bucket) take(now time.Time) bool {
	b.tokens = min(b.rate, b.tokens+now.Sub(b.last).Seconds()*b.rate)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// SetQuotas enforces requests-per-second quotas per action (nil: none):
// calls over a quota are answered with ThrottlingException, like AWS.
func (p *AWSProxy) SetQuotas(perSecond map[string]float64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.quotas = nil
	if perSecond == nil {
		return
	}
	p.quotas = map[string]*bucket{}
	now := time.Now()
	for action, r := range perSecond {
		p.quotas[action] = &bucket{rate: r, tokens: r, last: now}
	}
}

// Throttled returns how many calls of each action the quotas refused, and
// forgets them.
func (p *AWSProxy) Throttled() map[string]int {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.throttled
	p.throttled = map[string]int{}
	return t
}
