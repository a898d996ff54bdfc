package test

import (
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

func TestStatusExitCodes(t *testing.T) {
	moto.Reset(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")

	r := harness.Run(t, env, joblet, "certs", "status")
	if r.Code != 0 || !strings.Contains(r.Stdout, "all good") || !strings.Contains(r.Stdout, "SANs localhost, joblet, 127.0.0.1, ::1") ||
		!strings.Contains(r.Stdout, "CA rotation: stable") {
		t.Fatalf("healthy node: %s", r)
	}
	if r := harness.Run(t, env, joblet, "certs", "status", "--json"); r.Code != 0 || !strings.Contains(r.Stdout, `"daysLeft": 364`) {
		t.Fatalf("json: %s", r)
	}

	// Expiring within the warning window.
	_, _, soon := smNode(t, moto.URL)
	harness.MustRun(t, soon, joblet, "certs", "bootstrap", "--server-lifetime", "10d")
	r = harness.Run(t, soon, joblet, "certs", "status", "--warn-days", "30")
	if r.Code != 1 || !strings.Contains(r.Stdout, "Server Certificate: expires in 9 days (warning at 30)") {
		t.Fatalf("expiring: %s", r)
	}

	// Out of sync: the shared CA was replaced; this node has not caught up.
	_, _, other := smNode(t, moto.URL)
	harness.MustRun(t, append(other, "FORCE_REGENERATE=true"), joblet, "certs", "bootstrap")
	r = harness.Run(t, env, joblet, "certs", "status")
	if r.Code != 1 || !strings.Contains(r.Stdout, "not signed by the store's current CA") || !strings.Contains(r.Stdout, "run `rnx config refresh`") {
		t.Fatalf("out of sync: %s", r)
	}

	// Expired.
	_, _, short := smNode(t, moto.URL)
	harness.MustRun(t, short, joblet, "certs", "bootstrap", "--server-lifetime", "1s")
	time.Sleep(1500 * time.Millisecond)
	if r := harness.Run(t, short, joblet, "certs", "status"); r.Code != 2 || !strings.Contains(r.Stdout, "Server Certificate: expired on") {
		t.Fatalf("expired: %s", r)
	}

	// The store unreachable: the local certificate is still shown.
	r = harness.Run(t, append(env, "AWS_ENDPOINT_URL_SECRETS_MANAGER="+harness.ClosedURL), joblet, "certs", "status")
	if r.Code != 2 || !strings.Contains(r.Stdout, "store unreachable") || !strings.Contains(r.Stdout, "Server Certificate") {
		t.Fatalf("unreachable: %s", r)
	}
}
