package main

import (
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/backend/kms"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
)

func (c *cli) statusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status [--json] [--warn-days N]",
		Short: "the CA, role and server certificates and their sync with the store (exit 0 good, 1 attention, 2 broken)",
		Long: `Reports the CA, the role and server certificates and whether this node is in
sync with the store. Exit 0: all good; 1: something expires within --warn-days
or is out of sync; 2: expired, broken or the store is unreachable.

Every pair it can read is compared: the root key (ca-key, or the public key of
the KMS key ca-kms-key names, from kms:GetPublicKey) with the root
certificate, the node-issuing pair (and its key with what the signed trust
state lists), every role pair, this node's server pair and each rnx config's
pair; the trust state's signature, version and expiry are checked.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCAKMS)
	var home, srvPath, rnxPath string
	var warnDays int
	var asJSON bool
	fs.StringVar(&home, "home", config.Home(), "joblet home (env JOBLET_HOME)")
	fs.StringVar(&srvPath, "config", "", "this node's server config (default: HOME/config/joblet-config.yml when it exists)")
	fs.StringVar(&rnxPath, "rnx-config", "", "an rnx config to compare with the store (default: every HOME/config/rnx-config*.yml)")
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
		o := certs.StatusOptions{ServerConfig: orDefault(srvPath, "joblet-config.yml"), WarnDays: warnDays}
		if rnxPath != "" {
			o.RnxConfigs = []string{rnxPath}
		} else {
			// The operator's copy and the per-role files a node keeps to hand out.
			o.RnxConfigs, _ = filepath.Glob(filepath.Join(home, "config", "rnx-config*.yml"))
		}
		pin, err := sf.parsedPin()
		if err != nil {
			return err
		}
		fl := &certs.Fleet{Prefix: sf.prefix, StoreDesc: "store", Log: c.log, Pin: pin}
		ctx, cancel := sf.context()
		defer cancel()
		// A node's own config says where its store is; otherwise the flags do.
		if cfg, err := config.LoadServer(o.ServerConfig); o.ServerConfig != "" && err == nil && cfg.Store.Kind != "" {
			fl.Prefix = cfg.Store.Prefix
			fl.Store, fl.StoreDesc, o.StoreErr = backend.OpenStore(ctx, cfg.Store, c.log)
			o.CAKey = sf.caKey(cfg.Store.Region)
			// To compare a KMS root's public key with the root certificate.
			fl.OpenKMS, fl.KMSRegion = kms.OpenerFor(cfg.Store), cfg.Store.Region
		} else {
			rs, err := sf.open(ctx, home, c.log)
			if _, bad := err.(*usageError); bad {
				return err
			}
			if err != nil {
				o.StoreErr = err
			} else {
				fl.Store, fl.StoreDesc = rs.Store, rs.Desc
			}
			if rs != nil {
				o.CAKey = sf.caKey(rs.Ref.Region)
				fl.OpenKMS, fl.KMSRegion = kms.OpenerFor(rs.Ref), rs.Ref.Region
			}
		}
		if o.StoreErr != nil {
			fl.Store = nil
		}
		rep := fl.Status(ctx, o)
		if asJSON {
			if err := printJSON(c.stdout, rep); err != nil {
				return err
			}
		} else {
			rep.WriteText(c.stdout)
		}
		if rep.Level != certs.OK {
			return exitCode(rep.Level)
		}
		return nil
	}
	return cmd
}
