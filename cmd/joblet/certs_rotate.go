package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/push"
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
		run         rotationStep
	}
	for _, s := range []step{
		{"begin", "create the next CA and trust it next to the current one", func(f *certs.Fleet, ctx context.Context, newKey certs.CAKeyRef) (*certs.RotationStatus, error) {
			return f.BeginRotation(ctx, newKey)
		}},
		{"promote", "sign with the next CA: it becomes current, role certificates are re-issued", func(f *certs.Fleet, ctx context.Context, _ certs.CAKeyRef) (*certs.RotationStatus, error) {
			return f.PromoteRotation(ctx)
		}},
		{"finish", "stop trusting the old CA (after every node serves a certificate from the new one)", func(f *certs.Fleet, ctx context.Context, _ certs.CAKeyRef) (*certs.RotationStatus, error) {
			return f.FinishRotation(ctx)
		}},
		{"abort", "step back one phase: drop a begun rotation, or make the old CA current again after promote", func(f *certs.Fleet, ctx context.Context, _ certs.CAKeyRef) (*certs.RotationStatus, error) {
			return f.AbortRotation(ctx)
		}},
		{"status", "the rotation's phase, the CAs, and optionally which CA each node serves from", func(f *certs.Fleet, ctx context.Context, _ certs.CAKeyRef) (*certs.RotationStatus, error) {
			return f.RotationStatus(ctx)
		}},
	} {
		cmd.AddCommand(c.rotateStep(s.name, s.short, s.run))
	}
	return cmd
}

// rotationStep runs one step on the fleet; newKey is begin's --ca-kms-key-id.
type rotationStep func(f *certs.Fleet, ctx context.Context, newKey certs.CAKeyRef) (*certs.RotationStatus, error)

func (c *cli) rotateStep(name, short string, step rotationStep) *cobra.Command {
	cmd := &cobra.Command{Use: name + " [flags]", Short: short, Args: noArgs}
	fs := cmd.Flags()
	set := withDirStore | withCreate | withReplicas
	if name == "begin" {
		set |= withCAKMS
	}
	sf := addStoreFlags(fs, set)
	var home, keyType, caLife, nodes, rnxCfg string
	var asJSON, force bool
	window := time.Hour
	fs.StringVar(&home, "home", config.Home(), "joblet home: embedded mode's local store (env JOBLET_HOME)")
	fs.BoolVar(&asJSON, "json", false, "print the rotation status as JSON")
	if name == "begin" {
		addKeyTypeFlag(fs, &keyType, "key type of the new CA")
		fs.StringVar(&caLife, "ca-lifetime", "1095d", "lifetime of the new CA")
	}
	if name != "status" {
		fs.StringVar(&nodes, "nodes", os.Getenv(nodedir.Env), "the node directory's list (docs/JOBS.md): node addresses, HOST:PORT or NODE_ID=HOST:PORT, comma-separated: each is handed the new signed trust state and CRL at once, then asked which CA signed the certificate it serves (env JOBLET_NODES)")
		fs.StringVar(&rnxCfg, "rnx-config", filepath.Join(config.Home(), "config", "rnx-config.yml"), "with --nodes: the operator rnx config whose client certificate dials the nodes")
		fs.DurationVar(&window, "client-window", window, "with --nodes: count the client certificates of the outgoing CA the nodes verified within this long")
	} else {
		fs.StringVar(&nodes, "nodes", os.Getenv(nodedir.Env), "the node directory's list (docs/JOBS.md): node addresses, HOST:PORT or NODE_ID=HOST:PORT, comma-separated, to ask which CA signed the certificate they serve (env JOBLET_NODES)")
		fs.StringVar(&rnxCfg, "rnx-config", filepath.Join(config.Home(), "config", "rnx-config.yml"), "the operator rnx config used to ask the nodes")
		fs.DurationVar(&window, "client-window", window, "with --nodes: count the client certificates of the outgoing CA the nodes verified within this long")
	}
	if name == "finish" {
		fs.BoolVar(&force, "force", false, "finish even while nodes still serve a certificate from the old CA or see clients with one, or without asking any (--nodes)")
	}
	cmd.RunE = func(*cobra.Command, []string) error {
		var kt pki.KeyType
		var life time.Duration
		if name == "begin" {
			var err error
			if kt, err = parseKeyType(keyType); err != nil {
				return err
			}
			if life, err = parseLifetime("ca-lifetime", caLife); err != nil {
				return err
			}
		}
		var info certs.NodeInfo
		var addrs []string // the node directory's (internal/nodedir)
		if nodes != "" {
			dir, err := nodedir.FromList(nodes)
			if err != nil {
				return fmt.Errorf("--nodes: %w", err)
			}
			addrs = dir.Addresses()
			if info, err = client.DialNodeInfo(rnxCfg); err != nil {
				if name == "status" || name == "finish" {
					return fmt.Errorf("--nodes: %w", err)
				}
				// The step's own work needs no node: it runs, and the
				// push says what it could not do.
				fmt.Fprintf(c.stderr, "joblet: warning: --nodes: %v: the nodes are not asked about their certificates\n", err)
				info = nil
			}
		}
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, home, c.log)
		if err != nil {
			return err
		}
		fl.KeyType, fl.CALifetime = kt, life
		if name == "finish" {
			if err := c.finishGate(ctx, fl, addrs, rnxCfg, info, force, time.Now().Add(-window)); err != nil {
				return err
			}
		}
		st, err := step(fl, ctx, sf.caKey(fl.KMSRegion))
		if err != nil {
			return fmt.Errorf("rotate-ca %s: %w", name, err)
		}
		var pushed *push.Report
		if nodes != "" && name != "status" {
			pushed = c.pushState(fl, &pushFlags{nodes: nodes, rnxCfg: rnxCfg}, true, "the new trust state")
		}
		if info != nil {
			st.Nodes = certs.ProbeRotation(ctx, addrs, st, info, time.Now().Add(-window))
			if certs.ProbeIsOutgoing(rnxCfg, st.Outgoing()) {
				fmt.Fprintf(c.stderr, "joblet: warning: the client certificate in %s is from the outgoing CA: the nodes count its own handshakes among the outgoing CA's clients; refresh it (`rnx --config %s config refresh`)\n", rnxCfg, rnxCfg)
			}
		}
		if asJSON {
			if pushed != nil {
				return printJSON(c.stdout, struct {
					*certs.RotationStatus
					Push *push.Report `json:"push"`
				}{st, pushed})
			}
			return printJSON(c.stdout, st)
		}
		st.WriteText(c.stdout, fl.StoreDesc)
		if pushed != nil {
			fmt.Fprintln(c.stdout, pushed.Text("the new trust state"))
		}
		return nil
	}
	return cmd
}

// finishGate runs the finish gate (certs.CheckFinish) and shows what it
// says: refused without --force, a warning with it.
func (c *cli) finishGate(ctx context.Context, fl *certs.Fleet, nodes []string, rnxCfg string, info certs.NodeInfo, force bool, since time.Time) error {
	warnings, refused, err := fl.CheckFinish(ctx, certs.FinishCheck{Nodes: nodes, Info: info, RnxConfig: rnxCfg, Since: since, Force: force})
	if err != nil {
		return fmt.Errorf("rotate-ca finish: %w", err)
	}
	for _, w := range warnings {
		fmt.Fprintln(c.stderr, "joblet: warning:", w)
	}
	if refused != nil && !force {
		return fmt.Errorf("rotate-ca finish: %w", refused)
	}
	if refused != nil {
		fmt.Fprintln(c.stderr, "joblet: warning: --force:", refused)
	}
	return nil
}
