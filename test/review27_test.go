package test

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// One root rotation by three Secrets Manager runs on <prefix>/ca-key, all
// served by one warm Lambda function (as AWS reuses an execution
// environment between invocations): begin, promote once the node trusts
// the new root, finish once it serves from it. The function asks the node
// with the reader role's credentials; read once per process, they were the
// old root's certificate after the promote run, so every finish run's own
// question counted as a client of the outgoing root and the finish waited
// for as long as the function stayed warm.
func TestReview27RootRunsInOneWarmFunction(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	opHome := t.TempDir()
	opEnv := harness.Env(append(harness.AWSEnv(moto.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+opHome)...)
	home, port, env := smNode(t, moto.URL, "JOBLET_NODE_ID=node-1")
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", addr, "--out", filepath.Join(opHome, "configs"))
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	harness.Eventually(t, 15*time.Second, "node up", func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err
	})
	fn, fnARN := startRotator(t, joblet, "AWS_LAMBDA_FUNCTION_TIMEOUT=60", "JOBLET_NODES="+addr, "JOBLET_CLIENT_WINDOW=2s")
	c := smClient(moto.URL)
	rotate := func(token string) {
		t.Helper()
		if err := rotateBy(c, "joblet/ca-key", token, fnARN, "rate(90 days)"); err != nil {
			t.Fatal(err)
		}
	}
	phase := func() string {
		var st struct{ Phase string }
		if err := json.Unmarshal([]byte(harness.MustRun(t, opEnv, joblet, "certs", "rotate-ca", "status", "--json").Stdout), &st); err != nil {
			t.Fatal(err)
		}
		return st.Phase
	}
	runUntil := func(token, want string, within time.Duration) {
		t.Helper()
		deadline := time.Now().Add(within)
		for {
			rotate(token)
			if got := phase(); got == want {
				return
			} else if time.Now().After(deadline) {
				var waits []string
				for _, l := range strings.Split(fn.Proc.Output(), "\n") {
					if strings.Contains(l, "waits for the fleet") {
						waits = append(waits, l)
					}
				}
				if len(waits) > 2 {
					waits = waits[len(waits)-2:]
				}
				t.Fatalf("run %s: the fleet is %s after %s, want %s; the function's last waits:\n%s", token, got, within, want, strings.Join(waits, "\n"))
			}
			time.Sleep(time.Second)
		}
	}
	runUntil("3b0d2f7e-1a4c-4e8b-9d6f-0c2a5e7b9d11", "begun", 10*time.Second)
	runUntil("3b0d2f7e-1a4c-4e8b-9d6f-0c2a5e7b9d12", "promoted", 30*time.Second)
	runUntil("3b0d2f7e-1a4c-4e8b-9d6f-0c2a5e7b9d13", "stable", 40*time.Second)
}
