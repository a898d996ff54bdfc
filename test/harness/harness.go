// Package harness builds the joblet and rnx binaries and runs them as real
// processes for end-to-end tests, on 127.0.0.1 only.
package harness

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// Bins builds ./cmd/joblet and ./cmd/rnx once per test binary.
func Bins(t testing.TB) (joblet, rnx string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "joblet-bin-")
		if buildErr != nil {
			return
		}
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..")
		cmd := exec.Command("go", "build", "-o", binDir+"/", "./cmd/joblet", "./cmd/rnx")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "joblet"), filepath.Join(binDir, "rnx")
}

// handedOut holds every port freePort returned in this process: tests that
// run in parallel each bind theirs a moment after asking, and none may be
// given a port another was given.
var handedOut struct {
	sync.Mutex
	ports map[int]bool
}

func freePort() (int, error) {
	for {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		handedOut.Lock()
		taken := handedOut.ports[port]
		if !taken {
			if handedOut.ports == nil {
				handedOut.ports = map[int]bool{}
			}
			handedOut.ports[port] = true
		}
		handedOut.Unlock()
		if !taken {
			return port, nil
		}
	}
}

// FreePort returns a TCP port free on 127.0.0.1 at the time of the call,
// and never one it returned before in this process.
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// Result of a finished command.
type Result struct {
	Stdout, Stderr string
	Code           int
}

func (r Result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.Code, r.Stdout, r.Stderr)
}

// Env is a base environment for the binaries: the test's own environment
// without anything that would reach real AWS or a real metadata service.
func Env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "AWS_") || strings.HasPrefix(k, "JOBLET_") || k == "USE_SECRETS_MANAGER" ||
			k == "SECRETS_PREFIX" || k == "FORCE_REGENERATE" || k == "EC2_REGION" || k == "RNX_CONFIG" {
			continue
		}
		env = append(env, kv)
	}
	// Never the real metadata service: a closed loopback port plays "not on EC2".
	env = append(env, "AWS_EC2_METADATA_SERVICE_ENDPOINT="+ClosedURL)
	return append(env, extra...)
}

// Run runs bin with args and env, with a deadline.
func Run(t testing.TB, env []string, bin string, args ...string) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("run %s %v: %v", bin, args, err)
	}
	return Result{Stdout: out.String(), Stderr: errb.String(), Code: code}
}

// MustRun is Run that fails the test on a non-zero exit.
func MustRun(t testing.TB, env []string, bin string, args ...string) Result {
	t.Helper()
	r := Run(t, env, bin, args...)
	if r.Code != 0 {
		t.Fatalf("%s %s: %s", filepath.Base(bin), strings.Join(args, " "), r)
	}
	return r
}

// Proc is a background process stopped at test cleanup.
type Proc struct {
	Cmd *exec.Cmd
	out *bytes.Buffer
	mu  *sync.Mutex
	// logPath, when set, is the file the process writes its output to
	// (StartToFile) instead of out.
	logPath string
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// Output is what the process printed so far (stdout and stderr).
func (p *Proc) Output() string {
	if p.logPath != "" {
		b, _ := os.ReadFile(p.logPath)
		return string(b)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// Start runs bin in the background until the test ends (SIGTERM, then kill).
func Start(t testing.TB, env []string, bin string, args ...string) *Proc {
	t.Helper()
	return start(t, env, "", bin, args...)
}

// StartToFile is Start with the process's output written straight to a
// file in the test's temporary directory, as a service's goes to its
// journal: no pipe read by this process, for benchmarks that count this
// process's CPU (a node writes an audit line per call).
func StartToFile(t testing.TB, env []string, bin string, args ...string) *Proc {
	t.Helper()
	return start(t, env, filepath.Join(t.TempDir(), filepath.Base(bin)+".log"), bin, args...)
}

func start(t testing.TB, env []string, logPath, bin string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	p := &Proc{Cmd: cmd, out: &bytes.Buffer{}, mu: &sync.Mutex{}, logPath: logPath}
	if logPath != "" {
		f, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close() // the child holds its own descriptor
		cmd.Stdout, cmd.Stderr = f, f
	} else {
		w := lockedWriter{p.mu, p.out}
		cmd.Stdout, cmd.Stderr = w, w
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Output())
		}
	})
	return p
}

// Eventually retries f every 50ms until it returns nil or timeout passes.
func Eventually(t testing.TB, timeout time.Duration, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s: not within %v: %v", what, timeout, err)
}
