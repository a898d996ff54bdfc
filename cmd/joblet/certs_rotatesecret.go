package main

import (
	"context"
	"fmt"
	"os"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
)

// rotationFailed is the message of the log line a failed rotation step
// writes, for an alarm to match (a CloudWatch Logs metric filter on the
// function's log group: "joblet rotation step failed").
const rotationFailed = "joblet rotation step failed"

func (c *cli) rotateSecretCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate-secret [--secret-id ID --token TOKEN --step STEP]",
		Short: "Secrets Manager's rotation function for the node-issuing CA and the role pairs: one step, or the Lambda handler",
		Long: `Runs one step of Secrets Manager's rotation of <prefix>/node-ca-key, the
node-issuing CA's key, keyed by the rotation's ClientRequestToken (the id of the
version it makes), with the operator's power (the root's key; iam-policy --for
rotator). Every step is safe to run again: a step run twice never makes a second
key or certificate.

  createSecret   a new key and certificate under the root, listed in the signed
                 trust state, then the key written as version TOKEN (AWSPENDING)
  setSecret      nothing (createSecret listed it before writing the key)
  testSecret     the pending CA is the one the trust state lists, under the
                 current root, and issues a node's certificate that verifies
  finishSecret   the checks again, AWSCURRENT to version TOKEN, then
                 <prefix>/node-ca-cert gets its certificate; nodes renew from it
                 on their next refresh, clients trust the root and need nothing

For a role's key (<prefix>/client-key-<role>, <prefix>/client-key for admin) the
pair is re-issued with the contract of ` + "`joblet certs reissue`" + ` (configs from
before keep working until they expire or are revoked): createSecret claims the
new pair (the same on every run) and writes its certificate and key as version
TOKEN of both secrets; testSecret checks it is the role's, from the current root,
unrevoked; finishSecret moves AWSCURRENT on the key, then on the certificate.

A failed step changes no current version; it exits non-zero and logs a line
with the message "` + rotationFailed + `" (alarm on it). Secrets Manager keeps
AWSPENDING on version TOKEN, and its next attempt with the same token completes
the rotation.

As an AWS Lambda function (the runtime sets AWS_LAMBDA_RUNTIME_API): without
--step, it serves Secrets Manager's rotation events ({SecretId,
ClientRequestToken, Step}) until the runtime ends it. The function's
environment: SECRETS_PREFIX, and AWS_REGION (set by Lambda).`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, 0)
	var secretID, token, step string
	var asJSON bool
	fs.StringVar(&secretID, "secret-id", "", "the secret rotated (name or ARN): <prefix>/node-ca-key, or a role's key <prefix>/client-key[-ROLE]")
	fs.StringVar(&token, "token", "", "the rotation's ClientRequestToken (the id of the version it makes)")
	fs.StringVar(&step, "step", "", "createSecret, setSecret, testSecret or finishSecret")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !cmd.Flags().Changed("use-secrets-manager") && os.Getenv("USE_SECRETS_MANAGER") == "" {
			sf.useSM = "true" // rotation is Secrets Manager's
		}
		if step == "" && os.Getenv("AWS_LAMBDA_RUNTIME_API") != "" {
			if os.Getenv("JOBLET_SEEN_DIR") == "" {
				// The function's file system is read-only but /tmp.
				os.Setenv("JOBLET_SEEN_DIR", "/tmp/joblet-seen")
			}
			lambda.Start(func(ctx context.Context, e events.SecretsManagerSecretRotationEvent) (*certs.RotationResult, error) {
				return c.rotationStep(ctx, sf, e.SecretID, e.ClientRequestToken, e.Step)
			})
			return nil
		}
		if secretID == "" || token == "" || step == "" {
			return usagef("--secret-id, --token and --step are required (or run it as a Lambda function)")
		}
		ctx, cancel := sf.context()
		defer cancel()
		res, err := c.rotationStep(ctx, sf, secretID, token, step)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(c.stdout, res)
		}
		fmt.Fprintf(c.stdout, "🔑 %s: %s\n", res.Step, res.Done)
		return nil
	}
	return cmd
}

// rotationStep runs one step and logs its outcome: the failure line an alarm
// matches, or what it did.
func (c *cli) rotationStep(ctx context.Context, sf *storeFlags, secretID, token, step string) (*certs.RotationResult, error) {
	res, err := c.rotateStepIn(ctx, sf, secretID, token, step)
	if err != nil {
		c.log.Error(rotationFailed, "secret", secretID, "step", step, "token", token, "error", err,
			"current", "unchanged: Secrets Manager's next attempt with this token takes up from here")
		return nil, err
	}
	c.log.Info("joblet rotation step done", "secret", res.Secret, "step", res.Step, "token", res.Token, "done", res.Done)
	return res, nil
}

func (c *cli) rotateStepIn(ctx context.Context, sf *storeFlags, secretID, token, step string) (*certs.RotationResult, error) {
	rs, err := sf.open(ctx, config.Home(), c.log)
	if err != nil {
		return nil, err
	}
	vs, ok := rs.Store.(certs.VersionStore)
	if !ok {
		return nil, usagef("rotation by Secrets Manager needs the Secrets Manager store; %s is not one", rs.Desc)
	}
	fl := sf.fleet(rs, c.log)
	return fl.RotateSecretStep(ctx, vs, secretID, token, step)
}
