package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/config"
)

// replicateCmd replicates the existing shared secrets to more regions.
func (c *cli) replicateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "replicate --replica-regions r1,r2",
		Short: "replicate the existing shared secrets to more regions (disaster recovery)",
		Args:  noArgs,
	}
	sf := addStoreFlags(cmd.Flags(), withReplicas)
	var asJSON bool
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the replicated secrets as JSON")
	cmd.RunE = func(*cobra.Command, []string) error {
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		names, err := fl.Replicate(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(c.stdout, map[string]any{"store": fl.StoreDesc, "regions": strings.Split(sf.replicas, ","), "secrets": names})
		}
		fmt.Fprintf(c.stdout, "replicated %d secrets to %s\n", len(names), sf.replicas)
		return nil
	}
	return cmd
}
