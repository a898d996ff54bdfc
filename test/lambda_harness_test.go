package test

import (
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"

	"github.com/ehsaniara/joblet/test/harness"
)

// TestLambdaHarness: a Go handler (aws-lambda-go's lambda.Start) runs under
// the AWS Lambda Runtime Interface Emulator with its arguments and
// environment; its result and its error come back through Invoke; two
// functions run side by side.
func TestLambdaHarness(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "lambdaecho")
	if out, err := exec.Command("go", "build", "-o", bin, "./harness/lambdaecho").CombinedOutput(); err != nil {
		t.Fatalf("build the test handler: %v\n%s", err, out)
	}
	a := harness.StartLambda(t, harness.Env("ECHO_ENV=a"), bin, "--flag", "x")
	b := harness.StartLambda(t, harness.Env("ECHO_ENV=b"), bin)
	for _, tc := range []struct {
		l    *harness.Lambda
		env  string
		args []string
	}{{a, "a", []string{"--flag", "x"}}, {b, "b", nil}} {
		for range 2 { // the second finds the handler warm
			out, err := tc.l.Invoke(map[string]any{"say": "hello"})
			if err != nil {
				t.Fatal(err)
			}
			var got struct {
				Said string   `json:"said"`
				Args []string `json:"args"`
				Env  string   `json:"env"`
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("answer %s: %v", out, err)
			}
			if got.Said != "hello" || got.Env != tc.env || !slices.Equal(got.Args, tc.args) {
				t.Fatalf("answer %+v, want said hello, env %q, args %q", got, tc.env, tc.args)
			}
		}
	}
	_, err := a.Invoke(map[string]any{"say": "no", "fail": true})
	var fe *harness.FunctionError
	if !errors.As(err, &fe) || fe.Message != "asked to fail: no" {
		t.Fatalf("a failing handler: %v, want a FunctionError \"asked to fail: no\"", err)
	}
	if _, err := a.Invoke(map[string]any{"say": "again"}); err != nil {
		t.Fatalf("after a handler's error: %v", err)
	}
}
