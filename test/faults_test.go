package test

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

var faultNames = map[harness.Verdict]string{harness.Throttle: "throttling", harness.ServerError: "HTTP 500",
	harness.Unavailable: "HTTP 503", harness.Slow: "1 s latency", harness.Reset: "connection reset", harness.Truncate: "truncated response"}

// Every fault, injected into the first two calls of every kind, is ridden
// out: the bootstrap succeeds and the store ends with one consistent CA.
func TestTransientStoreFaults(t *testing.T) {
	t.Parallel()
	joblet, _ := harness.Bins(t)
	for _, v := range []harness.Verdict{harness.Throttle, harness.ServerError, harness.Unavailable, harness.Slow, harness.Reset, harness.Truncate} {
		t.Run(faultNames[v], func(t *testing.T) {
			moto := resetMoto(t)
			proxy := harness.StartAWSProxy(t, moto.URL)
			var faulted atomic.Int32
			proxy.OnCall(func(_ string, n int) harness.Verdict {
				if n < 2 {
					faulted.Add(1)
					return v
				}
				return harness.Forward
			}, nil)
			home, _, env := smNode(t, proxy.URL)
			start := time.Now()
			r := harness.Run(t, env, joblet, "certs", "bootstrap")
			took := time.Since(start)
			if r.Code != 0 {
				t.Fatalf("%s in the first two calls of each kind: %s", faultNames[v], r)
			}
			stored := readStore(t, "joblet")
			checkStore(t, stored, "joblet")
			if serverConfig(t, home).Security.CACert != stored["joblet/ca-cert"] {
				t.Fatal("the node does not hold the stored CA")
			}
			reliability.Record(t, "store faults", "bootstrap with "+faultNames[v]+" on the first two calls of each action",
				fmt.Sprintf("exit 0 in %v after %d calls, %d of them faulted; one CA, every pair consistent, the node holds it", took.Round(10*time.Millisecond), len(proxy.Calls()), faulted.Load()))
		})
	}
}

// A fault that does not pass ends in a clear failure within the deadline:
// non-zero exit, the cause named, no local file, nothing stored.
func TestPersistentStoreFaults(t *testing.T) {
	t.Parallel()
	joblet, _ := harness.Bins(t)
	for v, want := range map[harness.Verdict]string{harness.Unavailable: "HTTP 503", harness.Reset: "connection reset", harness.Truncate: "EOF"} {
		t.Run(faultNames[v], func(t *testing.T) {
			moto := resetMoto(t)
			proxy := harness.StartAWSProxy(t, moto.URL)
			proxy.OnCall(func(string, int) harness.Verdict { return v }, nil)
			home, _, env := smNode(t, proxy.URL, "JOBLET_TIMEOUT=20s")
			start := time.Now()
			r := harness.Run(t, env, joblet, "certs", "bootstrap")
			if r.Code != 1 || !strings.Contains(r.Stderr, want) {
				t.Fatalf("want exit 1 naming %q: %s", want, r)
			}
			d := time.Since(start)
			if d > 30*time.Second {
				t.Fatalf("took %v, past its 20s deadline", d)
			}
			noFiles(t, home)
			if v := readStore(t, "joblet"); len(v) != 0 {
				t.Fatalf("store changed: %d secrets", len(v))
			}
			reliability.Record(t, "store faults", "bootstrap with "+faultNames[v]+" on every call (JOBLET_TIMEOUT=20s)",
				fmt.Sprintf("exit %d after %v and %d attempts: %s; no local file, no secret", r.Code, d.Round(100*time.Millisecond), len(proxy.Calls()), lastLine(r.Stderr)))
		})
	}
}

// The whole command is bounded by --timeout / JOBLET_TIMEOUT.
func TestCommandDeadline(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	proxy := harness.StartAWSProxy(t, moto.URL)
	// Reads pass, every create is throttled: bootstrap re-reads and retries
	// until its deadline.
	proxy.OnCall(func(action string, _ int) harness.Verdict {
		if action == "CreateSecret" {
			return harness.Throttle
		}
		return harness.Forward
	}, nil)
	home, _, env := smNode(t, proxy.URL, "JOBLET_TIMEOUT=4s")
	start := time.Now()
	r := harness.Run(t, env, joblet, "certs", "bootstrap")
	d := time.Since(start)
	if r.Code != 1 || !strings.Contains(r.Stderr, "throttled") || !strings.Contains(r.Stderr, "deadline") {
		t.Fatalf("%s", r)
	}
	if d < 3*time.Second || d > 15*time.Second {
		t.Fatalf("took %v with a 4s deadline", d)
	}
	noFiles(t, home)
	reliability.Record(t, "store faults", "bootstrap with every CreateSecret throttled (JOBLET_TIMEOUT=4s)",
		fmt.Sprintf("exit %d after %v and %d calls: %s; no local file", r.Code, d.Round(100*time.Millisecond), len(proxy.Calls()), lastLine(r.Stderr)))
}

// lastLine is the final line of a command's stderr: its error.
func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		s = s[i+1:]
	}
	return s
}
