package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

func (a *app) configCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Manage the rnx config",
		Args:  cobra.ArbitraryArgs,
		RunE:  group("refresh"),
	}
	c.AddCommand(a.configRefreshCmd())
	return c
}

func (a *app) configRefreshCmd() *cobra.Command {
	var role, prefix, storeSpec, region string
	c := &cobra.Command{
		Use:   "refresh",
		Short: "Re-fetch client certificates and the trust bundle from the store",
		Long: `Re-fetch the client certificates and the trust bundle of the config's nodes
from the store (needs read access; USE_SECRETS_MANAGER as for joblet).`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var only pki.Role
			if role != "" {
				r, err := pki.ParseRole(role)
				if err != nil {
					return usagef(cmd, "%v", err)
				}
				only = r
			}
			if err := secretstore.ValidatePrefix(prefix); err != nil {
				return usagef(cmd, "%v", err)
			}
			if err := a.load(); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rs, err := backend.ResolveStore(ctx, backend.StoreRequest{UseSecretsManager: config.EnvOr("USE_SECRETS_MANAGER", "auto"),
				StoreSpec: storeSpec, Region: region, Home: config.Home()})
			if err != nil {
				return err
			}
			fl := &certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: prefix}
			res, err := fl.RefreshClientConfig(ctx, a.path, only)
			if err != nil {
				return err
			}
			for _, p := range res.Problems {
				// The config keeps the CRL it had: say why, loudly.
				fmt.Fprintln(a.errOut, "rnx: warning:", p)
			}
			fmt.Fprintf(a.out, "refreshed %s from %s: nodes %s\n", a.path, rs.Desc, strings.Join(res.Updated, ", "))
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "refresh only the nodes of this role")
	f.StringVar(&prefix, "prefix", config.EnvOr("SECRETS_PREFIX", certs.DefaultPrefix), "secret name prefix (env SECRETS_PREFIX)")
	f.StringVar(&storeSpec, "store", os.Getenv("JOBLET_STORE"), "a directory store: dir:PATH (env JOBLET_STORE)")
	f.StringVar(&region, "region", config.EnvOr("EC2_REGION", os.Getenv("AWS_REGION")), "AWS region (env EC2_REGION, AWS_REGION)")
	return c
}
