package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/config"
)

func (c *cli) userCACmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user-ca [--rotate] [--lifetime 365d]",
		Short: "make the user-issuing CA people's certificates come from (rnx login; the root signs it)",
		Long: `Signs a user-issuing CA with the root (client authentication only, path length
0) and stores its certificate and key in <prefix>/user-ca, which only the
issuer's IAM policy reads (iam-policy --for issuer): no node, job or client sees
it. The issuer (joblet issuer, or its Lambda function) signs people's
short-lived certificates with it; nodes still accept a person only for the role
the root-signed identity policy gives them.

An existing user-issuing CA is replaced only with --rotate; certificates it
issued keep working until they expire (hours).`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withReplicas)
	var rotate, asJSON bool
	var life, keyType string
	fs.BoolVar(&rotate, "rotate", false, "replace the existing user-issuing CA with a new one")
	fs.StringVar(&life, "lifetime", "365d", "the user-issuing CA's lifetime (days with d, or a duration)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	addKeyTypeFlag(fs, &keyType, "the user-issuing CA's key type")
	cmd.RunE = func(*cobra.Command, []string) error {
		lifetime, err := parseLifetime("lifetime", life)
		if err != nil {
			return err
		}
		kt, err := parseKeyType(keyType)
		if err != nil {
			return err
		}
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		res, err := fl.MakeUserCA(ctx, rotate, lifetime, kt)
		if err != nil {
			return fmt.Errorf("user-ca: %w", err)
		}
		if asJSON {
			return printJSON(c.stdout, res)
		}
		fmt.Fprintf(c.stdout, "🔏 user-issuing CA serial %s signed by the root in %s, valid until %s\n", res.Serial, fl.StoreDesc, res.Expires)
		if res.Replaced != "" {
			fmt.Fprintf(c.stdout, "  replaced serial %s: certificates it issued keep working until they expire\n", res.Replaced)
		}
		fmt.Fprintln(c.stdout, "  next: run the issuer (`joblet issuer`, iam-policy --for issuer) and give people a config with `rnx login`")
		return nil
	}
	return cmd
}
