package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// rotationScheduler is the Secrets Manager store's side of rotation
// schedules (awssm.Store).
type rotationScheduler interface {
	Schedule(ctx context.Context, name, lambdaARN, schedule string) error
	secretstore.RotationReader
}

func (c *cli) scheduleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule --function-arn ARN | --show",
		Short: "have Secrets Manager rotate the fleet's key-holding secrets on a schedule, with the rotation function",
		Long: `Sets Secrets Manager's rotation of every secret the rotation function
(` + "`joblet certs rotate-secret`" + ` as a Lambda function) rotates: the node-issuing
CA's key (--node-ca, default weekly: half its 14 days) and each role's key
(--roles, default every 30 days). Nothing rotates now: Secrets Manager tests the
function (its testSecret step) on a copy of each current value, and rotates at
the first scheduled time. Running it again changes the schedules.

--show prints each secret's schedule, its last rotation, and a rotation that
started and did not finish (a failed step, which Secrets Manager retries).

Not scheduled: the root's key (its rotation by Secrets Manager is not built yet:
use ` + "`joblet certs rotate-ca`" + `), so AWS Security Hub's SecretsManager.1 still
flags <prefix>/ca-key, and the re-issue records under <prefix>/client-reissue/.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, 0)
	var fn, nodeCA, roles string
	var show, asJSON bool
	fs.StringVar(&fn, "function-arn", "", "ARN of the rotation function (joblet certs rotate-secret as a Lambda function)")
	fs.StringVar(&nodeCA, "node-ca", "rate(7 days)", "schedule expression for the node-issuing CA's key")
	fs.StringVar(&roles, "roles", "rate(30 days)", "schedule expression for each role's key")
	fs.BoolVar(&show, "show", false, "print each secret's schedule and last rotation; change nothing")
	fs.BoolVar(&asJSON, "json", false, "with --show, print JSON")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if !cmd.Flags().Changed("use-secrets-manager") && config.EnvOr("USE_SECRETS_MANAGER", "") == "" {
			sf.useSM = "true" // schedules are Secrets Manager's
		}
		if !show && fn == "" {
			return usagef("--function-arn is required (or --show)")
		}
		ctx, cancel := sf.context()
		defer cancel()
		rs, err := sf.open(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		sch, ok := rs.Store.(rotationScheduler)
		if !ok {
			return usagef("rotation schedules are Secrets Manager's; %s is not Secrets Manager", rs.Desc)
		}
		names := certs.Names{Prefix: sf.prefix}.RotatedSecrets()
		if !show {
			for i, name := range names {
				expr := roles
				if i == 0 {
					expr = nodeCA
				}
				if err := sch.Schedule(ctx, name, fn, expr); err != nil {
					return err
				}
			}
		}
		type row struct {
			Secret string `json:"secret"`
			secretstore.Rotation
		}
		var rows []row
		for _, name := range names {
			r, err := sch.Rotation(ctx, name)
			if err != nil {
				return err
			}
			rows = append(rows, row{name, r})
		}
		if asJSON {
			return printJSON(c.stdout, rows)
		}
		for _, r := range rows {
			state := "not scheduled"
			if r.Enabled {
				state = "rotated by " + r.Function + " on " + r.Schedule
			}
			last := "never rotated"
			if r.LastRotated != nil {
				last = "last rotated " + r.LastRotated.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(c.stdout, "%-32s %s; %s", r.Secret, state, last)
			if r.Pending != "" {
				fmt.Fprintf(c.stdout, "; a rotation did not finish (version %s): Secrets Manager retries it, the function's log says why", r.Pending)
			}
			fmt.Fprintln(c.stdout)
		}
		return nil
	}
	return cmd
}
