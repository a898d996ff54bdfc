package test

import (
	"net"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

func script(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "scripts", name)
}

func runScript(t *testing.T, env []string, name string) harness.Result {
	t.Helper()
	return harness.Run(t, env, "bash", script(name))
}

// The drop-in scripts work as the spec's user data calls them: settings in
// the environment only. A custom CA bundle (AWS_CA_BUNDLE, common behind
// corporate proxies) must not stop the Secrets Manager client.
func TestDropInScripts(t *testing.T) {
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	home, _, env := smNode(t, moto.URL, "JOBLET_BIN="+joblet, "AWS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt")
	r := runScript(t, env, "certs_gen_with_secretsmanager.sh")
	if r.Code != 0 || !strings.Contains(r.Stdout, "✨ CA Certificate: Generated and stored in Secrets Manager") {
		t.Fatalf("%s", r)
	}
	checkStore(t, readStore(t, "joblet"), "joblet")
	if serverConfig(t, home).Security.CACert != readStore(t, "joblet")["joblet/ca-cert"] {
		t.Fatal("node config does not hold the shared CA")
	}

	home, _, env = smNode(t, harness.ClosedURL, "JOBLET_BIN="+joblet, "USE_SECRETS_MANAGER=")
	r = runScript(t, env, "certs_gen_embedded.sh")
	if r.Code != 0 || !strings.Contains(r.Stdout, "embedded mode") {
		t.Fatalf("%s", r)
	}
	serverConfig(t, home)

	_, _, env = smNode(t, harness.ClosedURL, "JOBLET_BIN="+joblet)
	if r := runScript(t, env, "certs_gen_embedded.sh"); r.Code != 2 || !strings.Contains(r.Stderr, "use certs_gen_with_secretsmanager.sh") {
		t.Fatalf("embedded script with USE_SECRETS_MANAGER=true: %s", r)
	}
	_, _, env = smNode(t, moto.URL, "JOBLET_BIN=/nonexistent/joblet")
	if r := runScript(t, env, "certs_gen_with_secretsmanager.sh"); r.Code != 1 || !strings.Contains(r.Stderr, "set JOBLET_BIN") {
		t.Fatalf("missing binary: %s", r)
	}
}

// The embedded demo runs end to end on a free port, and the follow step
// sees the job's own exit code.
func TestDemoEmbedded(t *testing.T) {
	port := strconv.Itoa(harness.FreePort(t))
	r := runScript(t, harness.Env("JOBLET_SERVER_PORT="+port), "demo-embedded.sh")
	for _, want := range []string{"hello from job on", "rnx job run --follow exited with 3", "(refused, as it should be)", "done"} {
		if r.Code != 0 || !strings.Contains(r.Stdout, want) {
			t.Fatalf("lacks %q: %s", want, r)
		}
	}
}

// A port another process holds fails the demo within a second, naming the
// port and how to choose another, before it builds anything.
func TestDemoEmbeddedTakenPort(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	start := time.Now()
	r := runScript(t, harness.Env("JOBLET_SERVER_PORT="+port), "demo-embedded.sh")
	if r.Code == 0 || !strings.Contains(r.Stderr, "127.0.0.1:"+port+" is already in use") || !strings.Contains(r.Stderr, "JOBLET_SERVER_PORT") || strings.Contains(r.Stdout, "== build") {
		t.Fatalf("%s", r)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v to fail", d)
	}
}

// The fleet demo: moto, three nodes, HAProxy, rnx through the balancer.
func TestDemoFleet(t *testing.T) {
	r := runScript(t, harness.Env(), "demo-fleet.sh")
	if r.Code != 0 || strings.Count(r.Stdout, "node id:") != 6 || !strings.Contains(r.Stdout, "hello from a fleet node") ||
		!strings.Contains(r.Stdout, "rnx job run --follow exited with 3") || !strings.Contains(r.Stdout, "joblet dev (commit ") ||
		strings.Contains(r.Stdout, "commit unknown") {
		t.Fatalf("%s", r)
	}
}
