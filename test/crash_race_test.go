package test

import (
	"context"
	"fmt"
	"github.com/ehsaniara/joblet/internal/certs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/testutil/openssl"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// startTogether runs n bootstrap processes, released at the same moment,
// and returns their homes.
func startTogether(t *testing.T, n int, envFor func(i int) (string, []string)) []string {
	t.Helper()
	joblet, _ := harness.Bins(t)
	homes := make([]string, n)
	cmds := make([]*exec.Cmd, n)
	outs := make([]*strings.Builder, n)
	for i := range cmds {
		home, env := envFor(i)
		homes[i] = home
		cmds[i] = exec.Command(joblet, "certs", "bootstrap")
		cmds[i].Env = env
		outs[i] = &strings.Builder{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	start := make(chan struct{})
	for i, c := range cmds {
		wg.Add(1)
		go func(i int, c *exec.Cmd) {
			defer wg.Done()
			<-start
			errs[i] = c.Run()
		}(i, c)
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("bootstrap %d: %v\n%s", i, err, outs[i])
		}
	}
	return homes
}

// verifyNodes checks with openssl that every node's server certificate
// chains to caPEM and that the node wrote that CA.
func verifyNodes(t *testing.T, homes []string, caPEM string) {
	t.Helper()
	for _, h := range homes {
		s := serverConfig(t, h)
		if s.Security.CACert != caPEM {
			t.Fatalf("node %s wrote another CA", h)
		}
		openssl.Verify(t, []byte(caPEM), []byte(s.Security.ServerCert), "sslserver")
	}
}

// raceSize is how many bootstraps start together and how many rounds run:
// 20 x 1 by default, 50 x 5 with JOBLET_LONG_TESTS=1.
func raceSize() (procs, rounds int) {
	if os.Getenv("JOBLET_LONG_TESTS") == "1" {
		return 50, 5
	}
	return 20, 1
}

func TestRaceSecretsManager(t *testing.T) {
	t.Parallel()
	procs, rounds := raceSize()
	for round := 1; round <= rounds; round++ {
		moto := resetMoto(t)
		start := time.Now()
		homes := startTogether(t, procs, func(int) (string, []string) {
			home, _, env := smNode(t, moto.URL)
			return home, env
		})
		vals := readStore(t, "joblet")
		checkStore(t, vals, "joblet")
		verifyNodes(t, homes, vals["joblet/ca-cert"])
		// Secrets Manager never held a second CA: ca-key and ca-cert each
		// have exactly one version.
		for _, name := range []string{"joblet/ca-key", "joblet/ca-cert"} {
			out := awsCLI(t, "secretsmanager", "list-secret-version-ids", "--secret-id", name, "--query", "length(Versions)", "--output", "text")
			if strings.TrimSpace(out) != "1" {
				t.Errorf("%s has %s versions, want 1", name, out)
			}
		}
		t.Logf("round %d: %d processes, one CA, every pair consistent, every server certificate verified (%s)", round, procs, time.Since(start).Round(time.Millisecond))
		reliability.Record(t, "races", fmt.Sprintf("%d bootstraps at once against an empty Secrets Manager (round %d of %d)", procs, round, rounds),
			fmt.Sprintf("all exit 0 in %v; one CA (ca-key and ca-cert have one version each), every pair consistent, %d server certificates verified by openssl", time.Since(start).Round(100*time.Millisecond), len(homes)))
	}
}

func TestRaceDirectoryStore(t *testing.T) {
	t.Parallel()
	procs, rounds := raceSize()
	for round := 1; round <= rounds; round++ {
		dir := filepath.Join(t.TempDir(), "shared")
		start := time.Now()
		homes := startTogether(t, procs, func(int) (string, []string) {
			home, _, env := smNode(t, harness.ClosedURL, "USE_SECRETS_MANAGER=false", "JOBLET_STORE=dir:"+dir)
			return home, env
		})
		st, _ := secretstore.NewDirStore(dir)
		vals, err := st.Get(context.Background(), certs.Names{Prefix: "joblet"}.All())
		if err != nil {
			t.Fatal(err)
		}
		checkStore(t, vals, "joblet")
		verifyNodes(t, homes, vals["joblet/ca-cert"])
		t.Logf("round %d: %d processes on one directory store, one CA", round, procs)
		reliability.Record(t, "races", fmt.Sprintf("%d bootstraps at once against an empty directory store (round %d of %d)", procs, round, rounds),
			fmt.Sprintf("all exit 0 in %v; one CA, every pair consistent, %d server certificates verified by openssl", time.Since(start).Round(100*time.Millisecond), len(homes)))
	}
}

// A bootstrap killed (SIGKILL) right after each of its store writes in turn
// leaves a state that the next bootstrap completes without help.
func TestCrashAfterEachStoreWrite(t *testing.T) {
	t.Parallel()
	joblet, _ := harness.Bins(t)
	writes := len(certs.Names{Prefix: "joblet"}.All())
	for k := 0; k < writes; k++ {
		t.Run(fmt.Sprintf("after write %d", k+1), func(t *testing.T) {
			moto := resetMoto(t)
			proxy := harness.StartAWSProxy(t, moto.URL)
			home, _, env := smNode(t, proxy.URL)
			cmd := exec.Command(joblet, "certs", "bootstrap")
			cmd.Env = env
			if !proxy.RunKilledAt(t, cmd, func(action string, n int) bool { return action == "CreateSecret" && n == k }) {
				t.Fatalf("the bootstrap was not killed at write %d", k+1)
			}
			killedAt := "?"
			for _, c := range proxy.Recorded() {
				if c.Action == "CreateSecret" && len(c.Secrets) > 0 {
					killedAt = "CreateSecret " + c.Secrets[0]
				}
			}
			noFiles(t, home)
			partial := readStore(t, "joblet")
			if len(partial) != k+1 {
				t.Fatalf("%d secrets stored before the crash, want %d", len(partial), k+1)
			}

			// Recovery: a plain re-run on another node, then on the same one.
			other, _, env2 := smNode(t, moto.URL)
			r := harness.MustRun(t, env2, joblet, "certs", "bootstrap")
			harness.MustRun(t, env, joblet, "certs", "bootstrap")
			vals := readStore(t, "joblet")
			checkStore(t, vals, "joblet")
			verifyNodes(t, []string{other, home}, vals["joblet/ca-cert"])
			// What the crashed node stored was kept, not replaced.
			for name, v := range partial {
				if vals[name] != v {
					t.Errorf("%s was replaced after the crash", name)
				}
			}
			if k%2 == 0 && !strings.Contains(r.Stdout, "🔧") {
				t.Errorf("a key stored without its certificate should be reported as completed:\n%s", r.Stdout)
			}
			reliability.Record(t, "crashes", fmt.Sprintf("bootstrap SIGKILLed right after store write %d of %d (%s)", k+1, writes, killedAt),
				fmt.Sprintf("no local file; %d secrets left; plain re-runs on another node and on the crashed one exit 0, keep what was stored, one CA", len(partial)))
		})
	}
}
