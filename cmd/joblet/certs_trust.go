package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/push"
)

func (c *cli) trustCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "trust",
		Short: "the fleet's root-signed trust state: what nodes and clients trust",
		Args:  subcommandArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return needSubcommand(cmd) },
	}
	cmd.AddCommand(c.trustSignCmd())
	return cmd
}

func (c *cli) trustSignCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sign [--json]",
		Short: "sign the fleet's trust state with the root (moves a fleet from before it; re-signs it when due; safe on a schedule)",
		Long: `Signs what nodes and clients trust (the root, and during a rotation the other CA
the cross certificate links to it) as one document with the root's key, versioned
and valid for 30 days, under <prefix>/ca-bundle. Nodes and clients then take a
change of trust only when a root they already trust signed it: a write to the
store without the root key changes nobody's trust.

For a fleet from before the signed trust state this is the move: run it once,
under traffic (nodes take it at their next refresh, from the CAs they trust;
clients at ` + "`rnx config refresh`" + `). A CA in the old bundle that no key of the
fleet vouches for is dropped and named. Afterwards it does nothing until the
state is half-way to its expiry, then signs it again: run it daily (cron, a
systemd timer) with the operator's permissions (the root's key; iam-policy --for
rotation). Every rotation step, node-ca and revoke sign it too.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withReplicas)
	var asJSON bool
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	pf := addPushFlags(fs)
	cmd.RunE = func(*cobra.Command, []string) error {
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		res, err := fl.SignTrustState(ctx)
		if err != nil {
			return fmt.Errorf("trust sign: %w", err)
		}
		if asJSON {
			if res.Signed && pf.nodes != "" {
				return printJSON(c.stdout, struct {
					*certs.TrustSignResult
					Push *push.Report `json:"push"`
				}{res, c.pushState(fl, pf, true, "the new trust state")})
			}
			return printJSON(c.stdout, res)
		}
		if res.Signed {
			defer c.pushState(fl, pf, false, "the new trust state")
		}
		if res.Signed {
			fmt.Fprintf(c.stdout, "🔏 trust state version %d signed in %s, valid until %s\n", res.Version, fl.StoreDesc, res.Expires)
		} else {
			fmt.Fprintf(c.stdout, "✓ trust state version %d is fresh (valid until %s): nothing to sign\n", res.Version, res.Expires)
		}
		for _, r := range res.Roots {
			fmt.Fprintf(c.stdout, "  trusted: serial %s (sha256 %s)\n", r.Serial, r.Fingerprint)
		}
		for _, d := range res.Dropped {
			fmt.Fprintf(c.stdout, "  ⚠ dropped: serial %s (sha256 %s): the old bundle trusted it, no key of this fleet vouches for it\n", d.Serial, d.Fingerprint)
		}
		fmt.Fprintln(c.stdout, "next:", res.Next)
		return nil
	}
	return cmd
}
