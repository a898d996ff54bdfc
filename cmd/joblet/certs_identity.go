package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/idpolicy"
)

func (c *cli) identityPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "identity-policy",
		Short: "the fleet's root-signed identity policy: which people (rnx login) may hold which role",
		Args:  subcommandArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return needSubcommand(cmd) },
	}
	cmd.AddCommand(c.identityPolicySignCmd(), c.identityPolicyShowCmd())
	return cmd
}

func (c *cli) identityPolicySignCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign --file POLICY.json [--lifetime 30d]",
		Short: "sign an identity policy with the root and store it (nodes take it at their next refresh)",
		Long: `Reads the rules, deny list, machine roles and refused shared roles from a JSON
file (fields: rules [{user|role [session]|account, uniqueId, grant}], deny,
machines, refuseShared), checks them, and signs them with the root's key under
<prefix>/identity-policy, versioned and valid for --lifetime. Nodes take it at
their next refresh when a root they trust signed it; they accept a person's
certificate (rnx login) only for a role it gives that person, and refuse
shared role certificates for the roles in refuseShared. A node holding no
policy, or an expired one, accepts no person: sign it again on the schedule
that signs the trust state.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withReplicas)
	var file, life string
	var asJSON bool
	fs.StringVar(&file, "file", "", "the policy as JSON (required)")
	fs.StringVar(&life, "lifetime", "30d", "how long the signed policy is valid (days with d, or a duration)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.RunE = func(*cobra.Command, []string) error {
		if file == "" {
			return usagef("--file is required: the policy as JSON (see `joblet certs identity-policy sign --help`)")
		}
		lifetime, err := parseLifetime("--lifetime", life)
		if err != nil {
			return err
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		var pol idpolicy.Policy
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&pol); err != nil {
			return usagef("%s: %v", file, err)
		}
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		res, err := fl.SignIdentityPolicy(ctx, &pol, lifetime)
		if err != nil {
			return fmt.Errorf("identity-policy sign: %w", err)
		}
		if asJSON {
			return printJSON(c.stdout, res)
		}
		fmt.Fprintf(c.stdout, "🔏 identity policy version %d signed in %s (%d rules), valid until %s; nodes take it at their next refresh\n", res.Version, fl.StoreDesc, res.Rules, res.Expires)
		return nil
	}
	return cmd
}

func (c *cli) identityPolicyShowCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "show",
		Short: "print the stored identity policy, verified from the fleet's root",
		Args:  noArgs,
	}
	sf := addStoreFlags(cmd.Flags(), withDirStore)
	cmd.RunE = func(*cobra.Command, []string) error {
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		pol, err := fl.IdentityPolicy(ctx)
		if err != nil {
			return err
		}
		return printJSON(c.stdout, pol)
	}
	return cmd
}
