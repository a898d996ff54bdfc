package test

import (
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

func TestStatusExitCodes(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	_, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")

	r := harness.Run(t, env, joblet, "certs", "status")
	if r.Code != 0 || !strings.Contains(r.Stdout, "all good") || !strings.Contains(r.Stdout, "SANs localhost, joblet, 127.0.0.1, ::1") ||
		!strings.Contains(r.Stdout, "CA rotation: stable") {
		t.Fatalf("healthy node: %s", r)
	}
	// A fleet node's server certificate lives 7 days and renews itself:
	// --warn-days does not flag it, an overdue renewal does (unit tests).
	if r := harness.Run(t, env, joblet, "certs", "status", "--json"); r.Code != 0 || !strings.Contains(r.Stdout, `"daysLeft": 6`) || !strings.Contains(r.Stdout, `"issuedBy": "node-issuing CA`) {
		t.Fatalf("json: %s", r)
	}

	// Expiring within the warning window: what people renew (a CA).
	_, _, soon := smNode(t, moto.URL, "SECRETS_PREFIX=soon")
	harness.MustRun(t, soon, joblet, "certs", "bootstrap", "--ca-lifetime", "20d")
	r = harness.Run(t, soon, joblet, "certs", "status", "--warn-days", "30")
	if r.Code != 1 || !strings.Contains(r.Stdout, "CA Certificate: expires in 19 days (warning at 30)") {
		t.Fatalf("expiring: %s", r)
	}

	// Out of sync: the shared CA was replaced; this node has not caught up.
	_, _, other := smNode(t, moto.URL)
	harness.MustRun(t, append(other, "FORCE_REGENERATE=true"), joblet, "certs", "bootstrap")
	r = harness.Run(t, env, joblet, "certs", "status")
	// The node's own certificate needs a renewal (attention); the client
	// configs it keeps no longer work with the new CA (broken).
	if r.Code != 2 || !strings.Contains(r.Stdout, "not signed by the store's current node-issuing CA") || !strings.Contains(r.Stdout, "no longer works") {
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
