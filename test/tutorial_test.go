package test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// tutorialPorts is the line of docs/TUTORIAL.md that names its ports: the
// test runs the tutorial with free ones instead.
const tutorialPorts = "MOTO_PORT=5000 NODE1_PORT=50061 NODE2_PORT=50062 NODE3_PORT=50063 LB_PORT=50060 ISSUER_PORT=50070"

// docs/TUTORIAL.md, run as a reader would: every bash block, in order, in
// one shell (stopping at the first failing command), from the repository's
// root, with free loopback ports. So the tutorial cannot rot.
func TestTutorial(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"haproxy", "moto_server", "python3", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is required by docs/TUTORIAL.md and is missing: %v", tool, err)
		}
	}
	doc := readFile(t, repoFile("docs", "TUTORIAL.md"))
	blocks := regexp.MustCompile("(?s)```bash\n(.*?)```").FindAllStringSubmatch(doc, -1)
	if len(blocks) < 8 {
		t.Fatalf("docs/TUTORIAL.md has %d bash blocks", len(blocks))
	}
	if !strings.Contains(doc, tutorialPorts) {
		t.Fatalf("docs/TUTORIAL.md no longer names its ports as %q: update the test", tutorialPorts)
	}
	ports := fmt.Sprintf("MOTO_PORT=%d NODE1_PORT=%d NODE2_PORT=%d NODE3_PORT=%d LB_PORT=%d ISSUER_PORT=%d",
		harness.FreePort(t), harness.FreePort(t), harness.FreePort(t), harness.FreePort(t), harness.FreePort(t), harness.FreePort(t))
	var script strings.Builder
	script.WriteString("set -euo pipefail\n")
	for i, b := range blocks {
		fmt.Fprintf(&script, "echo '=== tutorial block %d'\n%s\n", i+1, strings.ReplaceAll(b[1], tutorialPorts, ports))
	}

	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", script.String())
	cmd.Dir = repoFile()
	cmd.Env = harness.Env("TMPDIR=" + t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Files, not pipes: what the tutorial starts in the background holds
	// its stdout, and Wait must not wait for that.
	dir := t.TempDir()
	outF, _ := os.Create(filepath.Join(dir, "stdout"))
	errF, _ := os.Create(filepath.Join(dir, "stderr"))
	cmd.Stdout, cmd.Stderr = outF, errF
	start := time.Now()
	err := cmd.Start()
	if err == nil {
		// Whatever the tutorial left running (a failed run skips its
		// teardown) goes with its process group.
		defer syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		err = cmd.Wait()
	}
	outF.Close()
	errF.Close()
	out, errb := bytes.NewBufferString(readFile(t, outF.Name())), bytes.NewBufferString(readFile(t, errF.Name()))
	t.Logf("docs/TUTORIAL.md: %d blocks in %v", len(blocks), time.Since(start).Round(time.Second))
	if err != nil {
		t.Fatalf("docs/TUTORIAL.md failed: %v\nstdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{"hello from a joblet job", "the job exited with 3", "phase begun", "trusts the pending CA",
		"phase promoted", "phase stable", "role:      developer", "refused as it should be",
		"logged in as arn:aws:iam::123456789012:user/alice (developer)", "hello from alice", "tutorial done"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("the tutorial's output lacks %q:\n%s\nstderr:\n%s", want, out.String(), errb.String())
		}
	}
	for i := 1; i <= 3; i++ {
		if !strings.Contains(out.String(), fmt.Sprintf("node-%d", i)) {
			t.Errorf("node-%d never answered through the balancer:\n%s", i, out.String())
		}
	}
	if !strings.Contains(errb.String(), "revoked") {
		t.Errorf("the revoked config was not refused as revoked:\n%s", errb.String())
	}
}
