package main

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
)

func (c *cli) statusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [--json] [--warn-days N]",
		Short: "the CA, role and server certificates and their sync with the store (exit 0 good, 1 attention, 2 broken)",
		Long: `Reports the CA, the role and server certificates and whether this node is in
sync with the store. Exit 0: all good; 1: something expires within --warn-days
or is out of sync; 2: expired, broken or the store is unreachable.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCAKMS)
	var home, srvPath, rnxPath string
	var warnDays int
	var asJSON bool
	fs.StringVar(&home, "home", config.Home(), "joblet home (env JOBLET_HOME)")
	fs.StringVar(&srvPath, "config", "", "this node's server config (default: HOME/config/joblet-config.yml when it exists)")
	fs.StringVar(&rnxPath, "rnx-config", "", "an rnx config to compare with the store (default: HOME/config/rnx-config.yml when it exists)")
	fs.IntVar(&warnDays, "warn-days", 30, "warn about certificates expiring within this many days")
	fs.BoolVar(&asJSON, "json", false, "print the report as JSON")
	cmd.RunE = func(*cobra.Command, []string) error {
		orDefault := func(p, name string) string {
			if p != "" {
				return p
			}
			if d := filepath.Join(home, "config", name); fileExists(d) {
				return d
			}
			return ""
		}
		o := certs.StatusOptions{Prefix: sf.prefix, ServerConfig: orDefault(srvPath, "joblet-config.yml"),
			RnxConfig: orDefault(rnxPath, "rnx-config.yml"), WarnDays: warnDays, Now: time.Now(), CAKMSKeyID: sf.caKMS}
		ctx, cancel := sf.context()
		defer cancel()
		// A node's own config says where its store is; otherwise the flags do.
		if cfg, err := config.LoadServer(o.ServerConfig); o.ServerConfig != "" && err == nil && cfg.Store.Kind != "" {
			o.Prefix = cfg.Store.Prefix
			o.Store, o.StoreDesc, o.StoreErr = certs.OpenStore(ctx, cfg.Store, c.log)
		} else {
			rs, err := sf.open(ctx, home, c.log)
			if _, bad := err.(*usageError); bad {
				return err
			}
			if err != nil {
				o.StoreErr, o.StoreDesc = err, "store"
			} else {
				o.Store, o.StoreDesc = rs.Store, rs.Desc
			}
		}
		if o.StoreErr != nil {
			o.Store = nil
		}
		rep := certs.Status(ctx, o)
		if asJSON {
			if err := printJSON(c.stdout, rep); err != nil {
				return err
			}
		} else {
			printStatus(c.stdout, rep)
		}
		if rep.Level != certs.OK {
			return exitCode(rep.Level)
		}
		return nil
	}
	return cmd
}

func printStatus(w io.Writer, r *certs.Report) {
	mark := map[int]string{certs.OK: "✅", certs.Attention: "⚠️ ", certs.Broken: "❌"}
	fmt.Fprintf(w, "store: %s", r.Store)
	if r.Phase != "" {
		fmt.Fprintf(w, " (CA rotation: %s)", r.Phase)
	}
	fmt.Fprintln(w)
	if r.CAKey != "" {
		fmt.Fprintf(w, "CA key: %s\n", r.CAKey)
	}
	for _, c := range r.Certificates {
		fmt.Fprintf(w, "%s %s\n     %s\n     subject %s, serial %s\n     sha256 %s\n     valid %s to %s (%d days left)\n",
			mark[c.Level], c.Name, c.Where, c.Subject, c.Serial, c.Fingerprint,
			c.NotBefore.Format("2006-01-02"), c.NotAfter.Format("2006-01-02"), c.DaysLeft)
		if len(c.SANs) > 0 {
			fmt.Fprintf(w, "     SANs %s\n", strings.Join(c.SANs, ", "))
		}
	}
	for _, rv := range r.Revocations {
		fmt.Fprintf(w, "🚫 revoked serial %s at %s (reason %d)\n", rv.Serial, rv.RevokedAt.Format(time.RFC3339), rv.Reason)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "all good")
		return
	}
	fmt.Fprintln(w, "problems:")
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}
