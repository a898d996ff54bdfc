// Command lambdarotate is a Secrets Manager rotation function for any
// secret, the shape of AWS's own rotation templates, for the tests of the
// moto launcher's rotation corrections: createSecret puts a new value
// under the token as AWSPENDING (unless that version has one: a step run
// again), finishSecret moves AWSCURRENT to it; setSecret and testSecret do
// nothing. It prints "step STEP TOKEN" for each invocation. A step named
// in the file $ROTATE_FAIL_FILE fails; $ROTATE_RECREATE=1 makes
// createSecret always put a value of its own (a function that is not safe
// to run again).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
)

func main() {
	cfg, err := config.LoadDefaultConfig(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	c := sm.NewFromConfig(cfg)
	lambda.Start(func(ctx context.Context, e events.SecretsManagerSecretRotationEvent) error {
		fmt.Println("step", e.Step, e.ClientRequestToken)
		if b, err := os.ReadFile(os.Getenv("ROTATE_FAIL_FILE")); err == nil && strings.Contains(string(b), e.Step) {
			return fmt.Errorf("%s failed (asked to by %s)", e.Step, os.Getenv("ROTATE_FAIL_FILE"))
		}
		switch e.Step {
		case "createSecret":
			if os.Getenv("ROTATE_RECREATE") != "1" {
				if _, err := c.GetSecretValue(ctx, &sm.GetSecretValueInput{SecretId: &e.SecretID, VersionId: &e.ClientRequestToken, VersionStage: aws.String("AWSPENDING")}); err == nil {
					return nil
				}
			}
			_, err := c.PutSecretValue(ctx, &sm.PutSecretValueInput{SecretId: &e.SecretID, ClientRequestToken: &e.ClientRequestToken,
				SecretString: aws.String("value-" + time.Now().Format(time.RFC3339Nano)), VersionStages: []string{"AWSPENDING"}})
			return err
		case "finishSecret":
			d, err := c.DescribeSecret(ctx, &sm.DescribeSecretInput{SecretId: &e.SecretID})
			if err != nil {
				return err
			}
			cur := ""
			for id, st := range d.VersionIdsToStages {
				for _, s := range st {
					if s == "AWSCURRENT" {
						cur = id
					}
				}
			}
			if cur == e.ClientRequestToken {
				return nil
			}
			_, err = c.UpdateSecretVersionStage(ctx, &sm.UpdateSecretVersionStageInput{SecretId: &e.SecretID, VersionStage: aws.String("AWSCURRENT"),
				MoveToVersionId: &e.ClientRequestToken, RemoveFromVersionId: &cur})
			return err
		case "setSecret", "testSecret":
			return nil
		}
		return errors.New("unknown step " + e.Step)
	})
}
