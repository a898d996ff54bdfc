package harness

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RIEBinary finds the AWS Lambda Runtime Interface Emulator, aws-lambda-rie
// ($AWS_LAMBDA_RIE, then PATH, then .tmp/bin where scripts/lib/deps.sh
// installs it from the Go module proxy). Missing is a failure, never a skip.
func RIEBinary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("AWS_LAMBDA_RIE"); p != "" {
		return p
	}
	if p, err := exec.LookPath("aws-lambda-rie"); err == nil {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".tmp", "bin", "aws-lambda-rie")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatal("aws-lambda-rie (the AWS Lambda Runtime Interface Emulator) is required and not installed: run `. scripts/lib/deps.sh` (scripts/test.sh does), " +
		"or go install github.com/aws/aws-lambda-runtime-interface-emulator/cmd/aws-lambda-rie@v0.0.0-20261030222936-bef5c4ba774d, or set AWS_LAMBDA_RIE")
	return ""
}

// Lambda is a function running under the Runtime Interface Emulator.
type Lambda struct {
	// URL is the invoke endpoint, Lambda's own Invoke API path:
	// http://127.0.0.1:PORT/2015-03-31/functions/function/invocations.
	// POST the event as the body; the answer is the handler's result.
	URL  string
	Proc *Proc
}

// StartLambda runs bin (a Go handler binary: aws-lambda-go's lambda.Start,
// or anything speaking the Lambda Runtime API) with args under the AWS
// Lambda Runtime Interface Emulator on 127.0.0.1, on free ports for both
// the invoke API and the runtime API (so several can run at once), until
// the test ends. env is the environment of RIE, which it hands on to the
// handler (RIE adds AWS_LAMBDA_RUNTIME_API, AWS_LAMBDA_FUNCTION_NAME=
// test_function and the like; set AWS_LAMBDA_FUNCTION_TIMEOUT, in seconds,
// to bound an invocation: default 300). Pass Env(...) or AWSEnv(url) to
// keep the test's own AWS settings out. RIE starts the handler on the first
// invocation and keeps it for the next ones, as Lambda keeps a warm
// environment; it serves one invocation at a time (a concurrent one is
// answered 400), as one Lambda execution environment does. The handler's
// output, and RIE's, is in Proc.Output() and logged when the test fails.
//
// It returns once the invoke API accepts connections; invoke it with
// Invoke, or over HTTP yourself.
func StartLambda(t testing.TB, env []string, bin string, args ...string) *Lambda {
	t.Helper()
	rie := RIEBinary(t)
	invokePort, apiPort := FreePort(t), FreePort(t)
	// RIE parses its flags anywhere on its command line and keeps the ones
	// it does not know (its go-flags parser ignores "--" as a terminator
	// only by passing it on, as the command): the handler's arguments must
	// not be RIE's own flag names (--log-level, --runtime-api-address,
	// --runtime-interface-emulator-address, --enable-init-caching).
	rieArgs := append([]string{
		"--log-level", "info",
		"--runtime-interface-emulator-address", "127.0.0.1:" + strconv.Itoa(invokePort),
		"--runtime-api-address", "127.0.0.1:" + strconv.Itoa(apiPort),
		bin}, args...)
	p := startGroup(t, env, rie, rieArgs...)
	addr := "127.0.0.1:" + strconv.Itoa(invokePort)
	Eventually(t, 15*time.Second, "aws-lambda-rie up", func() error {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return fmt.Errorf("%w\n%s", err, p.Output())
		}
		c.Close()
		return nil
	})
	return &Lambda{URL: "http://" + addr + "/2015-03-31/functions/function/invocations", Proc: p}
}

// FunctionError is a handler's error as the Lambda runtime reports it
// (the handler returned an error or panicked): Lambda's Invoke answers it
// with X-Amz-Function-Error and this body.
type FunctionError struct {
	Message string `json:"errorMessage"`
	Type    string `json:"errorType"`
}

func (e *FunctionError) Error() string { return e.Type + ": " + e.Message }

// Invoke sends event (marshalled to JSON unless it is []byte or
// json.RawMessage) to a function's invoke URL (Lambda.URL) and returns the
// handler's result. A handler's error is a *FunctionError; a failure of
// the emulator itself (not up, a timeout, a concurrent invocation) is any
// other error.
func Invoke(url string, event any) ([]byte, error) {
	var body []byte
	switch e := event.(type) {
	case []byte:
		body = e
	case json.RawMessage:
		body = e
	default:
		b, err := json.Marshal(event)
		if err != nil {
			return nil, fmt.Errorf("marshal the event: %w", err)
		}
		body = b
	}
	c := &http.Client{Timeout: 5 * time.Minute}
	resp, err := c.Post(url, "application/json", bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("invoke %s: %w", url, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the answer of %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("invoke %s: the emulator answered %s: %s", url, resp.Status, out)
	}
	// RIE answers a handler's error with 200 and the runtime's error
	// document (Lambda adds X-Amz-Function-Error; RIE does not): a result
	// with exactly errorMessage and errorType (and maybe stackTrace) is
	// one.
	var fe struct {
		FunctionError
		StackTrace json.RawMessage `json:"stackTrace"`
	}
	var keys map[string]json.RawMessage
	if json.Unmarshal(out, &keys) == nil && keys["errorType"] != nil && keys["errorMessage"] != nil && len(keys) <= 3 {
		if json.Unmarshal(out, &fe) == nil {
			return nil, &fe.FunctionError
		}
	}
	return out, nil
}

// Invoke sends event to the function: see the package function Invoke.
func (l *Lambda) Invoke(event any) ([]byte, error) { return Invoke(l.URL, event) }

// startGroup is Start for a process that starts children of its own (RIE
// runs the handler): it runs in its own process group, and the whole
// group is ended when the test ends, so no handler outlives it.
func startGroup(t testing.TB, env []string, bin string, args ...string) *Proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{Cmd: cmd, out: &bytes.Buffer{}, mu: &sync.Mutex{}}
	w := lockedWriter{p.mu, p.out}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
		}
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(bin), p.Output())
		}
	})
	return p
}

// MotoFunction registers a Lambda function name in the moto at motoURL
// (with the IAM role moto requires, created when missing) that moto
// invokes by POSTing to invokeURL (a Lambda.URL): moto_launcher.py routes
// the invocation of a function whose environment has MOTO_LAMBDA_RIE_URL
// there (moto itself would run it in docker). Secrets Manager's rotation
// in moto, and `aws lambda invoke`, then reach the handler under RIE. It
// returns the function's ARN. The package is a placeholder: RIE runs the
// handler binary given to StartLambda.
func MotoFunction(t testing.TB, motoURL, name, invokeURL string) string {
	t.Helper()
	dir := t.TempDir()
	awsRun := func(args ...string) (string, error) {
		cmd := exec.Command("aws", append(args, "--output", "text")...)
		cmd.Env = Env(append(AWSEnv(motoURL), "HOME="+dir)...)
		out, err := cmd.CombinedOutput()
		return string(bytes.TrimSpace(out)), err
	}
	const role = "joblet-test-lambda"
	if _, err := awsRun("iam", "get-role", "--role-name", role); err != nil {
		trust := `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":{"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]}`
		if out, err := awsRun("iam", "create-role", "--role-name", role, "--assume-role-policy-document", trust); err != nil {
			t.Fatalf("create the function's role in moto: %v\n%s", err, out)
		}
	}
	roleARN, err := awsRun("iam", "get-role", "--role-name", role, "--query", "Role.Arn")
	if err != nil {
		t.Fatalf("read the function's role from moto: %v\n%s", err, roleARN)
	}
	zipPath := filepath.Join(dir, "function.zip")
	if err := writeZip(zipPath, "bootstrap", []byte("#!/bin/sh\n# run by the Lambda Runtime Interface Emulator, not by moto\n")); err != nil {
		t.Fatal(err)
	}
	arn, err := awsRun("lambda", "create-function", "--function-name", name, "--runtime", "provided.al2023", "--handler", "bootstrap",
		"--role", roleARN, "--zip-file", "fileb://"+zipPath, "--timeout", "60",
		"--environment", "Variables={MOTO_LAMBDA_RIE_URL="+invokeURL+"}", "--query", "FunctionArn")
	if err != nil {
		t.Fatalf("create the function %s in moto: %v\n%s", name, err, arn)
	}
	return arn
}

func writeZip(path, name string, data []byte) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	z := zip.NewWriter(f)
	w, err := z.Create(name)
	if err == nil {
		_, err = w.Write(data)
	}
	if err == nil {
		err = z.Close()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
