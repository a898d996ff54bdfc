package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (c *cli) rotateCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "rotate-ca",
		Short: "staged CA rotation without downtime: begin, promote, finish (or abort); status (docs/ROTATION.md)",
		Args:  subcommandArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return needSubcommand(cmd) },
	}
	type step struct {
		name, short string
		run         func(*certs.Rotation) func(context.Context) (*certs.RotationStatus, error)
	}
	for _, s := range []step{
		{"begin", "create the next CA and trust it next to the current one", func(r *certs.Rotation) func(context.Context) (*certs.RotationStatus, error) { return r.Begin }},
		{"promote", "sign with the next CA: it becomes current, role certificates are re-issued", func(r *certs.Rotation) func(context.Context) (*certs.RotationStatus, error) { return r.Promote }},
		{"finish", "stop trusting the old CA (after every node serves a certificate from the new one)", func(r *certs.Rotation) func(context.Context) (*certs.RotationStatus, error) { return r.Finish }},
		{"abort", "drop a begun rotation before promote", func(r *certs.Rotation) func(context.Context) (*certs.RotationStatus, error) { return r.Abort }},
		{"status", "the rotation's phase, the CAs, and optionally which CA each node serves from", func(r *certs.Rotation) func(context.Context) (*certs.RotationStatus, error) { return r.Status }},
	} {
		cmd.AddCommand(c.rotateStep(s.name, s.short, s.run))
	}
	return cmd
}

func (c *cli) rotateStep(name, short string, step func(*certs.Rotation) func(context.Context) (*certs.RotationStatus, error)) *cobra.Command {
	cmd := &cobra.Command{Use: name + " [flags]", Short: short, Args: noArgs}
	fs := cmd.Flags()
	set := withDirStore | withCreate | withReplicas
	if name == "begin" {
		set |= withCAKMS
	}
	sf := addStoreFlags(fs, set)
	var home, keyType, caLife, nodes, rnxCfg string
	var asJSON bool
	fs.StringVar(&home, "home", config.Home(), "joblet home: embedded mode's local store (env JOBLET_HOME)")
	fs.BoolVar(&asJSON, "json", false, "print the rotation status as JSON")
	if name == "begin" {
		addKeyTypeFlag(fs, &keyType, "key type of the new CA")
		fs.StringVar(&caLife, "ca-lifetime", "1095d", "lifetime of the new CA")
	}
	if name == "status" {
		fs.StringVar(&nodes, "nodes", "", "comma list of node addresses (HOST:PORT) to ask which CA signed the certificate they serve")
		fs.StringVar(&rnxCfg, "rnx-config", filepath.Join(config.Home(), "config", "rnx-config.yml"), "the operator rnx config used to ask the nodes")
	}
	cmd.RunE = func(*cobra.Command, []string) error {
		r := &certs.Rotation{Prefix: sf.prefix, CAKMSKeyID: sf.caKMS}
		if name == "begin" {
			var err error
			if r.KeyType, err = parseKeyType(keyType); err != nil {
				return err
			}
			if r.CALifetime, err = parseLifetime("ca-lifetime", caLife); err != nil {
				return err
			}
		}
		var info certs.NodeInfo
		if nodes != "" {
			var err error
			if info, err = certs.DialNodeInfo(rnxCfg); err != nil {
				return fmt.Errorf("--nodes: %w", err)
			}
		}
		ctx, cancel := sf.context()
		defer cancel()
		rs, err := sf.open(ctx, home, c.log)
		if err != nil {
			return err
		}
		r.Store, r.OpenKMS = rs.Store, rs.OpenKMS
		st, err := step(r)(ctx)
		if err != nil {
			return fmt.Errorf("rotate-ca %s: %w", name, err)
		}
		if info != nil {
			st.Nodes = certs.ProbeNodes(ctx, pki.SplitList(nodes), st.Current.Fingerprint, info)
		}
		if asJSON {
			return printJSON(c.stdout, st)
		}
		printRotation(c.stdout, rs.Desc, st)
		return nil
	}
	return cmd
}

func printRotation(w io.Writer, store string, st *certs.RotationStatus) {
	fmt.Fprintf(w, "CA rotation (%s): phase %s\n", store, st.Phase)
	fmt.Fprintf(w, "  current CA  serial %s, sha256 %s, expires %s, key: %s\n", st.Current.Serial, st.Current.Fingerprint, st.Current.NotAfter.Format("2006-01-02"), st.CurrentKey)
	if st.Pending != nil {
		fmt.Fprintf(w, "  pending CA  serial %s, sha256 %s, expires %s, key: %s\n", st.Pending.Serial, st.Pending.Fingerprint, st.Pending.NotAfter.Format("2006-01-02"), st.PendingKey)
	}
	for _, t := range st.Trusted {
		fmt.Fprintf(w, "  trusted     serial %s, sha256 %s\n", t.Serial, t.Fingerprint)
	}
	for _, role := range pki.Roles {
		from := "current CA"
		if v := st.Clients[string(role)]; v != "current" {
			from = v
		}
		fmt.Fprintf(w, "  %-10s client certificate from the %s\n", role, from)
	}
	for _, n := range st.Nodes {
		fmt.Fprintf(w, "  node %-22s %s\n", n.Address, n.Summary)
	}
	fmt.Fprintf(w, "next: %s\n", st.NextStep)
}
