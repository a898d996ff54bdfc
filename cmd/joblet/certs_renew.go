package main

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// renewed is renew's --json output.
type renewed struct {
	Config       string    `json:"config"`
	Store        string    `json:"store"`
	Serial       string    `json:"serial"`
	NotAfter     time.Time `json:"notAfter"`
	TrustChanged bool      `json:"trustChanged"`
	Trust        []string  `json:"trustedCAs"`
}

func (c *cli) renewCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "renew [--config PATH]",
		Short: "re-issue this node's server certificate from the shared CA now",
		Args:  noArgs,
	}
	var path string
	var timeout time.Duration
	var asJSON bool
	cmd.Flags().StringVar(&path, "config", filepath.Join(config.Home(), "config", "joblet-config.yml"), "server config to renew (default under $JOBLET_HOME)")
	cmd.Flags().DurationVar(&timeout, "timeout", 2*time.Minute, "the longest the command may take, retries included")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.RunE = func(*cobra.Command, []string) error {
		cfg, err := loadServerConfig(path, c.log)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		fl, err := nodeFleet(ctx, cfg, c.log)
		if err != nil {
			return err
		}
		res, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: path, Force: true, Config: cfg})
		if err != nil {
			return err
		}
		if res.RenewProblem != "" {
			return fmt.Errorf("not renewed: %s", res.RenewProblem)
		}
		if asJSON {
			return printJSON(c.stdout, renewed{Config: path, Store: fl.StoreDesc, Serial: res.Serial, NotAfter: res.NotAfter.UTC(), TrustChanged: res.TrustChanged, Trust: res.Trust})
		}
		fmt.Fprintf(c.stdout, "🆕 Server Certificate: renewed from the CA in %s, serial %s, expires %s\n", fl.StoreDesc, res.Serial, pki.ExpiryText(res.NotAfter, time.Now()))
		if res.TrustChanged {
			fmt.Fprintf(c.stdout, "   trust bundle updated: %d CA(s)\n", len(res.Trust))
		}
		fmt.Fprintf(c.stdout, "   %s rewritten; a running server picks it up within a second (no restart)\n", path)
		return nil
	}
	return cmd
}
