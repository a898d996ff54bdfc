package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/backend/kms"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/cloud"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (c *cli) bootstrapCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bootstrap [flags]",
		Short: "create or fetch the fleet's certificates and write this node's configs",
		Args:  noArgs,
	}
	f := addBootFlags(cmd.Flags(), withDirStore|withCreate|withReplicas|withCAKMS)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		o, err := f.options(c.log)
		if err != nil {
			return err
		}
		ctx, cancel := f.sf.context()
		defer cancel()
		var rs *backend.ResolvedStore
		if ref, ok := installedStore(cmd.Flags(), o.Home); ok {
			// Re-run on an installed node with no store settings: its own
			// store, never a new decision of auto mode.
			if !cmd.Flags().Changed("prefix") && os.Getenv("SECRETS_PREFIX") == "" && ref.Prefix != "" {
				o.Prefix = ref.Prefix
			}
			c.log.Info("using the store this node's config names", "store", ref.Kind, "dir", ref.Dir, "region", ref.Region)
			rs, err = backend.Reopen(ctx, ref, o.Home, c.log)
		} else {
			rs, err = f.sf.open(ctx, o.Home, c.log)
		}
		if err != nil {
			return err
		}
		o.Store, o.StoreDesc, o.Mode, o.StoreRef = rs.Store, rs.Desc, rs.Mode, rs.Ref
		o.CAKey, o.OpenKMS, o.KMSRegion = f.sf.caKey(rs.Ref.Region), kms.OpenerFor(rs.Ref), rs.Ref.Region
		if rs.Instance != nil {
			o.FallbackNodeID = rs.Instance.ID
		}
		return runBootstrap(ctx, o, f.asJSON, c.stdout, c.stderr)
	}
	return cmd
}

// installedStore is the store an installed node's config names, when no
// flag or environment variable chooses one or sets a store option (those
// go through the mode table, which checks them).
func installedStore(fs *pflag.FlagSet, home string) (config.StoreRef, bool) {
	for _, name := range []string{"use-secrets-manager", "store", "kms-key-id", "replica-regions", "tag", "ca-kms-key-id"} {
		if fs.Changed(name) {
			return config.StoreRef{}, false
		}
	}
	for _, env := range []string{"USE_SECRETS_MANAGER", "JOBLET_STORE", "JOBLET_KMS_KEY_ID", "JOBLET_REPLICA_REGIONS", "JOBLET_CA_KMS_KEY_ID"} {
		if _, set := os.LookupEnv(env); set {
			return config.StoreRef{}, false
		}
	}
	cfg, err := config.LoadServer(filepath.Join(home, "config", "joblet-config.yml"))
	if err != nil || cfg.Store.Kind == "" {
		return config.StoreRef{}, false
	}
	return cfg.Store, true
}

// bootFlags are bootstrap's flags; export takes them too.
type bootFlags struct {
	fs                                                           *pflag.FlagSet
	sf                                                           *storeFlags
	home, force, keyType, caLife, clientLife, serverLife         string
	serverAddr, listenAddr, port, extra, public, nodeID, metrics string
	settings, permit, emptyPause                                 string
	refresh                                                      time.Duration
	asJSON, moveNode, reconfigure                                bool
}

func addBootFlags(fs *pflag.FlagSet, set storeSet) *bootFlags {
	f := &bootFlags{fs: fs, sf: addStoreFlags(fs, set)}
	fs.StringVar(&f.home, "home", config.Home(), "joblet home; configs go to HOME/config (env JOBLET_HOME)")
	fs.StringVar(&f.force, "force-regenerate", config.EnvOr("FORCE_REGENERATE", "false"), "replace the shared CA and client certificates: true or false (env FORCE_REGENERATE)")
	addKeyTypeFlag(fs, &f.keyType, "key type of new keys")
	fs.StringVar(&f.caLife, "ca-lifetime", "1095d", "CA lifetime (days with d, or a duration)")
	fs.StringVar(&f.clientLife, "client-lifetime", "730d", "client certificate lifetime")
	fs.StringVar(&f.serverLife, "server-lifetime", "", "server certificate lifetime (default 7d with a shared store, where the running node renews it at two thirds; 365d embedded)")
	fs.StringVar(&f.serverAddr, "server-address", config.EnvOr("JOBLET_SERVER_ADDRESS", ""), "this node's address for clients and its certificate (env JOBLET_SERVER_ADDRESS; default: the primary IP)")
	fs.StringVar(&f.listenAddr, "listen-address", config.EnvOr("JOBLET_LISTEN_ADDRESS", "0.0.0.0"), "address the server listens on (env JOBLET_LISTEN_ADDRESS)")
	fs.StringVar(&f.port, "port", config.EnvOr("JOBLET_SERVER_PORT", strconv.Itoa(config.DefaultPort)), "server port (env JOBLET_SERVER_PORT)")
	fs.StringVar(&f.extra, "additional-names", config.EnvOr("JOBLET_ADDITIONAL_NAMES", ""), "comma list of extra DNS names and IPs for the server certificate (env JOBLET_ADDITIONAL_NAMES)")
	fs.StringVar(&f.public, "public-address", config.EnvOr("JOBLET_PUBLIC_ADDRESS", ""), "HOST[:PORT] of a load balancer in front of the fleet (env JOBLET_PUBLIC_ADDRESS)")
	fs.StringVar(&f.metrics, "metrics-address", config.EnvOr("JOBLET_METRICS_ADDRESS", ""), "HOST:PORT for /metrics and /healthz (plain HTTP; default off) (env JOBLET_METRICS_ADDRESS)")
	fs.DurationVar(&f.refresh, "refresh-interval", 0, "how often the running server refreshes trust and renews from the store, a safety net behind pushed changes (default "+config.DefaultRefreshInterval.String()+")")
	fs.StringVar(&f.nodeID, "node-id", config.EnvOr("JOBLET_NODE_ID", ""), "node id (env JOBLET_NODE_ID; default: kept from the existing config, else the EC2 instance id, else generated)")
	fs.BoolVar(&f.asJSON, "json", false, "print the result as JSON")
	settingsFlag(fs, &f.settings)
	fs.BoolVar(&f.reconfigure, "reconfigure", false, "allow a re-run to move this node's listen address or port, change its node id, or drop or add a name of its server certificate; without it such a run is refused (settings not given are kept from the node's config)")
	fs.StringVar(&f.permit, "permit-server-names", config.EnvOr("JOBLET_PERMIT_SERVER_NAMES", ""), "when this node creates the fleet (no certs init): comma list of DNS names, IP addresses and CIDR ranges the fleet's node-issuing CA may sign server certificates for, besides the defaults (private ranges, loopback, localhost, joblet, .internal) and this node's names (env JOBLET_PERMIT_SERVER_NAMES; later: joblet certs node-ca --permit-server-names)")
	fs.StringVar(&f.emptyPause, "empty-store-pause", config.EnvOr("JOBLET_EMPTY_STORE_PAUSE", "2s"), "on Secrets Manager, the longest random pause of a node that finds the store empty before it looks again and, if still empty, creates the fleet: nodes started together then mostly join with that second read instead of racing to create it (env JOBLET_EMPTY_STORE_PAUSE; 0: create at once)")
	fs.BoolVar(&f.moveNode, "move-node", false, "move this node to a fleet whose CA it does not trust (its configs are replaced); without it such a run is refused")
	return f
}

// options turns the flags into bootstrap options, without the store.
func (f *bootFlags) options(log *slog.Logger) (bootOptions, error) {
	if f.settings != "" {
		if err := applySettings(f.fs, f.settings); err != nil {
			return bootOptions{}, err
		}
	}
	o := bootOptions{Fleet: certs.Fleet{Prefix: f.sf.prefix, Log: log},
		BootstrapOptions: certs.BootstrapOptions{Home: f.home, RefreshInterval: f.refresh, MetricsAddress: f.metrics,
			ServerAddress: f.serverAddr, NodeID: f.nodeID, MoveNode: f.moveNode, Reconfigure: f.reconfigure}}
	pause, err := time.ParseDuration(f.emptyPause)
	if err != nil || pause < 0 {
		return o, usagef("--empty-store-pause/JOBLET_EMPTY_STORE_PAUSE %q is not a duration of 0 or more (2s, 500ms, 0)", f.emptyPause)
	}
	o.AwaitEmpty = pause
	if pause == 0 {
		o.AwaitEmpty = -1 // none (0 is the options' default)
	}
	// The node's own settings: given (a flag, its variable, the settings
	// file) or kept from the node's existing config (certs keep.go).
	if f.given("listen-address", "JOBLET_LISTEN_ADDRESS") {
		o.ListenAddress, o.Given = f.listenAddr, o.Given|certs.GivenListenAddress
	}
	if f.given("public-address", "JOBLET_PUBLIC_ADDRESS") {
		o.PublicAddress, o.Given = f.public, o.Given|certs.GivenPublicAddress
	}
	if f.given("additional-names", "JOBLET_ADDITIONAL_NAMES") {
		o.AdditionalNames, o.Given = append([]string{}, pki.SplitList(f.extra)...), o.Given|certs.GivenAdditionalNames
	}
	if o.Pin, err = f.sf.parsedPin(); err != nil {
		return o, err
	}
	if o.PermitNames, err = pki.ParseNameConstraints(pki.SplitList(f.permit)); err != nil {
		return o, usagef("--permit-server-names/JOBLET_PERMIT_SERVER_NAMES: %v", err)
	}
	if o.Force, err = parseBool("FORCE_REGENERATE", f.force); err != nil {
		return o, err
	}
	if o.KeyType, err = parseKeyType(f.keyType); err != nil {
		return o, err
	}
	if o.CALifetime, err = parseLifetime("ca-lifetime", f.caLife); err != nil {
		return o, err
	}
	if o.ClientLifetime, err = parseLifetime("client-lifetime", f.clientLife); err != nil {
		return o, err
	}
	if f.serverLife != "" {
		if o.ServerLifetime, err = parseLifetime("server-lifetime", f.serverLife); err != nil {
			return o, err
		}
	}
	if port, err := strconv.Atoi(f.port); err != nil || port <= 0 || port > 65535 {
		return o, usagef("port %q is not a TCP port (1-65535)", f.port)
	} else if f.given("port", "JOBLET_SERVER_PORT") {
		o.Port, o.Given = port, o.Given|certs.GivenPort
	}
	o.FallbackServerAddress = cloud.PrimaryIP()
	return o, o.Validate()
}

// given reports whether the run gives a setting: its flag, or its
// environment variable (the settings file, read into the environment).
func (f *bootFlags) given(flag, env string) bool {
	if f.fs.Changed(flag) {
		return true
	}
	_, set := os.LookupEnv(env)
	return set
}

// bootOptions are the fleet's settings and this node's, as the flags give them.
type bootOptions struct {
	certs.Fleet
	certs.BootstrapOptions
}

func runBootstrap(ctx context.Context, o bootOptions, asJSON bool, stdout, stderr io.Writer) error {
	res, err := o.Fleet.Bootstrap(ctx, o.BootstrapOptions)
	if err != nil {
		return err
	}
	if len(res.AddedNames) > 0 {
		// Never silent, --json or not: the certificate may now be
		// presented as these names.
		fmt.Fprintf(stderr, "joblet: the server certificate now also carries %s (--reconfigure)\n", strings.Join(res.AddedNames, ", "))
	}
	if asJSON {
		return printJSON(stdout, res)
	}
	printResult(stdout, res)
	return nil
}

func printResult(w io.Writer, r *certs.Result) {
	icon := map[string]string{certs.Generated: "✨", certs.Retrieved: "✅", certs.Completed: "🔧"}
	verb := map[string]string{certs.Generated: "Generated and stored in", certs.Retrieved: "Retrieved from", certs.Completed: "Completed (certificate added for the stored key) in"}
	if r.NodeID == "" {
		fmt.Fprintf(w, "joblet certificates (%s mode, operator)\n", r.Mode)
	} else {
		fmt.Fprintf(w, "joblet certificates (%s mode, node %s)\n", r.Mode, r.NodeID)
	}
	if r.CAKMSKey != "" {
		fmt.Fprintf(w, "  🔐 CA private key: in AWS KMS (%s); the root signs through kms:Sign, no CA key on this machine\n", r.CAKMSKey)
	}
	for _, it := range r.Items {
		if it.Name == "Server Certificate" {
			fmt.Fprintf(w, "  🆕 %s: Generated locally (instance-specific), serial %s, expires %s\n", it.Name, it.Serial, pki.ExpiryText(it.NotAfter, time.Now()))
			continue
		}
		fmt.Fprintf(w, "  %s %s: %s %s, expires %s\n", icon[it.Action], it.Name, verb[it.Action], it.Where, pki.ExpiryText(it.NotAfter, time.Now()))
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(w, "  ⚠️  %s\n", wn)
	}
	fmt.Fprintln(w, "Files:")
	for _, f := range r.Files {
		fmt.Fprintf(w, "  %s\n", f)
	}
}
