package main

import (
	"context"
	"fmt"
	"slices"
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
CA's key (--node-ca, default weekly: half its 14 days), each role's key
(--roles, default every 30 days), the user-issuing CA when the fleet has one
(--user-ca, default every 90 days) and the root's key (--root, default every 90
days: each run makes one step of a root rotation, begin, promote or finish, when
the fleet is ready for it, so a root lives about 270 days). Nothing rotates now:
Secrets Manager tests the function (its testSecret step) on a copy of each
current value, and rotates at the first scheduled time. Running it again changes
the schedules. A fleet whose root key is in AWS KMS has no <prefix>/ca-key: its
root is rotated by hand (rotate-ca begin --ca-kms-key-id).

--show prints each secret's schedule, its last rotation, and a rotation that
started and did not finish (a failed step, or a root run waiting for the fleet,
which Secrets Manager retries).

Not scheduled: the records under <prefix>/client-reissue/ and <prefix>/ca-rotation/
(AWS Security Hub's SecretsManager.1 flags them while they exist). A re-issue
record (the rotation function writes one for each role's key it rotates) stays
an hour after its re-issue completed, then ` + "`joblet certs prune`" + ` (or the next
` + "`joblet certs reissue`" + `) removes it; the function itself does not, so run prune
after the schedule's rotations, from cron say. ` + "`rotate-ca finish`" + ` removes a root's
rotation record.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, 0)
	var fn, nodeCA, roles, root, userCA string
	var show, asJSON bool
	fs.StringVar(&fn, "function-arn", "", "ARN of the rotation function (joblet certs rotate-secret as a Lambda function)")
	fs.StringVar(&nodeCA, "node-ca", "rate(7 days)", "schedule expression for the node-issuing CA's key")
	fs.StringVar(&roles, "roles", "rate(30 days)", "schedule expression for each role's key")
	fs.StringVar(&userCA, "user-ca", "rate(90 days)", "schedule expression for the user-issuing CA (rnx login), when the fleet has one")
	fs.StringVar(&root, "root", "rate(90 days)", "schedule expression for the root's key: each run makes one step of a root rotation")
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
		n := certs.Names{Prefix: sf.prefix}
		names := n.RotatedSecrets()
		// Secrets a fleet may not have: the root's key when it is in KMS,
		// the user-issuing CA without logins.
		optional := map[string]string{
			n.CAKey():  "the root's key is in AWS KMS: rotate the root by hand with `joblet certs rotate-ca begin --ca-kms-key-id NEW_KEY`",
			n.UserCA(): "the fleet has no user-issuing CA (rnx login): `joblet certs user-ca` makes one; run this again after it",
		}
		has, err := rs.Store.Get(ctx, []string{n.CAKey(), n.UserCA()})
		if err != nil {
			return err
		}
		names = slices.DeleteFunc(names, func(s string) bool {
			if why, ok := optional[s]; ok && has[s] == "" {
				fmt.Fprintf(c.stdout, "   %s does not exist, not scheduled: %s\n", s, why)
				return true
			}
			return false
		})
		if !show {
			for _, name := range names {
				expr := roles
				switch name {
				case n.NodeCAKey():
					expr = nodeCA
				case n.CAKey():
					expr = root
				case n.UserCA():
					expr = userCA
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
