package test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/test/harness"
)

var (
	rotateFnOnce sync.Once
	rotateFnBin  string
	rotateFnErr  error
)

// rotateFunction builds harness/lambdarotate, a rotation function of AWS's
// template shape, once per test binary.
func rotateFunction(t *testing.T) string {
	t.Helper()
	rotateFnOnce.Do(func() {
		dir, err := os.MkdirTemp("", "joblet-lambdarotate-")
		if err != nil {
			rotateFnErr = err
			return
		}
		rotateFnBin = filepath.Join(dir, "lambdarotate")
		if out, err := exec.Command("go", "build", "-o", rotateFnBin, "./harness/lambdarotate").CombinedOutput(); err != nil {
			rotateFnErr = errors.New(err.Error() + "\n" + string(out))
		}
	})
	if rotateFnErr != nil {
		t.Fatal("build the rotation function:", rotateFnErr)
	}
	return rotateFnBin
}

// stagesOf maps each version id of a secret to its labels.
func stagesOf(t *testing.T, c *sm.Client, id string) map[string][]string {
	t.Helper()
	d, err := c.DescribeSecret(context.Background(), &sm.DescribeSecretInput{SecretId: &id})
	if err != nil {
		t.Fatal(err)
	}
	return d.VersionIdsToStages
}

func currentVersion(t *testing.T, c *sm.Client, id string) (version, value string) {
	t.Helper()
	v, err := c.GetSecretValue(context.Background(), &sm.GetSecretValueInput{SecretId: &id, VersionStage: aws.String("AWSCURRENT")})
	if err != nil {
		t.Fatal(err)
	}
	return aws.ToString(v.VersionId), aws.ToString(v.SecretString)
}

// TestMotoLauncherRotation: the moto launcher's corrections of moto 5.2.1's
// RotateSecret (moto_launcher.py, items 4 and 5), each against what AWS
// does, with a rotation function of AWS's template shape running under the
// Lambda Runtime Interface Emulator.
func TestMotoLauncherRotation(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	ctx := context.Background()
	c := smClient(moto.URL)
	failFile := filepath.Join(t.TempDir(), "fail")
	fn := harness.StartLambda(t, harness.Env(append(harness.AWSEnv(moto.URL), "ROTATE_FAIL_FILE="+failFile)...), rotateFunction(t))
	arn := harness.MotoFunction(t, moto.URL, "rotate-test", fn.URL)
	steps := func() int { return strings.Count(fn.Proc.Output(), "step ") }
	create := func(name string) string {
		out, err := c.CreateSecret(ctx, &sm.CreateSecretInput{Name: aws.String(name), SecretString: aws.String("first")})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.ARN)
	}
	rotate := func(id, token string, rules *smtypes.RotationRulesType) (*sm.RotateSecretOutput, error) {
		in := &sm.RotateSecretInput{SecretId: &id, RotationLambdaARN: &arn, RotationRules: rules}
		if token != "" {
			in.ClientRequestToken = &token
		}
		return c.RotateSecret(ctx, in)
	}

	// 4 and the happy path: the function runs its four steps under RIE,
	// AWSCURRENT moves to its new value, and a second rotation (AWSPENDING
	// left on the current version, as AWS's templates leave it: 5d) runs too.
	t.Run("invoked through RIE, rotations in a row", func(t *testing.T) {
		id := create("rot/ok")
		for i := range 2 {
			before := steps()
			if _, err := rotate(id, "", nil); err != nil {
				t.Fatalf("rotation %d: %v", i+1, err)
			}
			if got := steps() - before; got != 4 {
				t.Fatalf("rotation %d: %d steps invoked, want 4:\n%s", i+1, got, fn.Proc.Output())
			}
			if _, v := currentVersion(t, c, id); !strings.HasPrefix(v, "value-") {
				t.Fatalf("rotation %d: current value %q, want the function's", i+1, v)
			}
		}
		d, err := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: &id})
		if err != nil || d.LastRotatedDate == nil {
			t.Fatalf("LastRotatedDate after a completed rotation: %v %v", d.LastRotatedDate, err)
		}
	})

	// 5a: no function, no rotation; the current value stays.
	t.Run("no function", func(t *testing.T) {
		id := create("rot/nofn")
		ver, _ := currentVersion(t, c, id)
		var ire *smtypes.InvalidRequestException
		if _, err := c.RotateSecret(ctx, &sm.RotateSecretInput{SecretId: &id}); !errors.As(err, &ire) {
			t.Fatalf("RotateSecret without a function: %v, want InvalidRequestException", err)
		}
		if v, val := currentVersion(t, c, id); v != ver || val != "first" {
			t.Fatalf("current moved to %s (%q)", v, val)
		}
	})

	// 5b: a ScheduleExpression rule enables rotation and is shown.
	t.Run("schedule expression", func(t *testing.T) {
		id := create("rot/schedule")
		if _, err := rotate(id, "", &smtypes.RotationRulesType{ScheduleExpression: aws.String("rate(7 days)")}); err != nil {
			t.Fatal(err)
		}
		d, err := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: &id})
		if err != nil {
			t.Fatal(err)
		}
		if !aws.ToBool(d.RotationEnabled) || d.RotationRules == nil || aws.ToString(d.RotationRules.ScheduleExpression) != "rate(7 days)" {
			t.Fatalf("RotationEnabled %v, rules %+v: want true and rate(7 days)", aws.ToBool(d.RotationEnabled), d.RotationRules)
		}
	})

	// 5f: a schedule set without rotating now runs testSecret on a pending
	// copy of the current value, then removes the copy.
	t.Run("schedule without rotating now", func(t *testing.T) {
		id := create("rot/later")
		ver, _ := currentVersion(t, c, id)
		before := steps()
		if _, err := c.RotateSecret(ctx, &sm.RotateSecretInput{SecretId: &id, RotationLambdaARN: &arn, RotateImmediately: aws.Bool(false),
			RotationRules: &smtypes.RotationRulesType{ScheduleExpression: aws.String("rate(7 days)")}}); err != nil {
			t.Fatal(err)
		}
		if got := steps() - before; got != 1 || !strings.Contains(fn.Proc.Output(), "step testSecret") {
			t.Fatalf("%d steps invoked, want testSecret alone", got)
		}
		if st := stagesOf(t, c, id); len(st) != 1 {
			t.Fatalf("versions after the test: %v, want the current one alone", st)
		}
		if v, val := currentVersion(t, c, id); v != ver || val != "first" {
			t.Fatalf("current %s %q, want %s unchanged", v, val, ver)
		}
		d, err := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: &id})
		if err != nil || !aws.ToBool(d.RotationEnabled) || d.LastRotatedDate != nil {
			t.Fatalf("RotationEnabled %v, LastRotatedDate %v (%v): want enabled, never rotated", aws.ToBool(d.RotationEnabled), d.LastRotatedDate, err)
		}
	})

	// 5c and 5d: a failed step stops the rotation, AWSCURRENT stays,
	// AWSPENDING keeps the new version; another token is refused while it
	// is in progress; the reattempt with its token completes.
	t.Run("failed step", func(t *testing.T) {
		id := create("rot/fail")
		ver, _ := currentVersion(t, c, id)
		if err := os.WriteFile(failFile, []byte("testSecret"), 0o600); err != nil {
			t.Fatal(err)
		}
		const token = "11111111-2222-3333-4444-555555555555"
		before := steps()
		if _, err := rotate(id, token, nil); err != nil {
			t.Fatal(err)
		}
		if got := steps() - before; got != 3 {
			t.Fatalf("%d steps invoked, want 3 (up to the failed testSecret)", got)
		}
		if v, val := currentVersion(t, c, id); v != ver || val != "first" {
			t.Fatalf("after a failed step the current version is %s (%q), want %s unchanged", v, val, ver)
		}
		if st := stagesOf(t, c, id)[token]; len(st) != 1 || st[0] != "AWSPENDING" {
			t.Fatalf("the new version's labels: %v, want AWSPENDING", st)
		}
		d, _ := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: &id})
		if d.LastRotatedDate != nil {
			t.Fatalf("LastRotatedDate %v after a failed rotation", d.LastRotatedDate)
		}
		var ire *smtypes.InvalidRequestException
		if _, err := rotate(id, "99999999-2222-3333-4444-555555555555", nil); !errors.As(err, &ire) {
			t.Fatalf("another rotation while one is in progress: %v, want InvalidRequestException", err)
		}
		os.Remove(failFile)
		if _, err := rotate(id, token, nil); err != nil {
			t.Fatal(err)
		}
		if v, _ := currentVersion(t, c, id); v != token {
			t.Fatalf("after the reattempt the current version is %s, want %s", v, token)
		}
	})

	// 5e: the token of a finished rotation changes nothing and runs
	// nothing; a PutSecretValue that reuses a pending version's token with
	// another value is refused.
	t.Run("reused token", func(t *testing.T) {
		id := create("rot/token")
		const token = "22222222-2222-3333-4444-555555555555"
		if _, err := rotate(id, token, nil); err != nil {
			t.Fatal(err)
		}
		_, val := currentVersion(t, c, id)
		before := steps()
		if _, err := rotate(id, token, nil); err != nil {
			t.Fatal(err)
		}
		if v, val2 := currentVersion(t, c, id); v != token || val2 != val || steps() != before {
			t.Fatalf("a rotation with a finished token: current %s %q, %d steps run; want %s %q unchanged, none", v, val2, steps()-before, token, val)
		}
		if n := len(stagesOf(t, c, id)); n != 2 {
			t.Fatalf("%d versions, want 2", n)
		}
		pend := "33333333-2222-3333-4444-555555555555"
		if _, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: &id, ClientRequestToken: &pend, SecretString: aws.String("a"), VersionStages: []string{"AWSPENDING"}}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: &id, ClientRequestToken: &pend, SecretString: aws.String("a"), VersionStages: []string{"AWSPENDING"}}); err != nil {
			t.Fatalf("the same value again: %v", err)
		}
		var ree *smtypes.ResourceExistsException
		if _, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: &id, ClientRequestToken: &pend, SecretString: aws.String("b"), VersionStages: []string{"AWSPENDING"}}); !errors.As(err, &ree) {
			t.Fatalf("another value under a used token: %v, want ResourceExistsException", err)
		}
		v, err := c.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: &id, VersionId: &pend})
		if err != nil || aws.ToString(v.SecretString) != "a" {
			t.Fatalf("the pending version's value: %q %v, want a", aws.ToString(v.SecretString), err)
		}
	})
}
