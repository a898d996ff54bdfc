package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/backend/kms"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/cloud"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
)

// envOr gives a flag its default from an environment variable, so that a
// flag given on the command line overrides the variable.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, fmt.Errorf("%w: %s=%q: use true or false", errUsage, name, v)
}

// parseLifetime accepts days ("365d") or a Go duration ("720h", "90m").
func parseLifetime(flagName, v string) (time.Duration, error) {
	var d time.Duration
	var err error
	if n, ok := strings.CutSuffix(v, "d"); ok {
		var days int
		days, err = strconv.Atoi(n)
		d = time.Duration(days) * 24 * time.Hour
	} else {
		d, err = time.ParseDuration(v)
	}
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%w: --%s %q: use a positive number of days (365d) or a duration (720h)", errUsage, flagName, v)
	}
	return d, nil
}

// bootFlags are bootstrap's flags; export takes them too.
type bootFlags struct {
	sf                                                           storeFlags
	home, force, keyType, caLife, clientLife, serverLife         *string
	serverAddr, listenAddr, port, extra, public, nodeID, metrics *string
	refresh                                                      *time.Duration
	asJSON                                                       *bool
}

func addBootFlags(fs *flag.FlagSet) *bootFlags {
	return &bootFlags{
		home:       fs.String("home", jobletHome(), "joblet home; configs go to HOME/config (env JOBLET_HOME)"),
		sf:         addStoreFlags(fs),
		force:      fs.String("force-regenerate", envOr("FORCE_REGENERATE", "false"), "replace the shared CA and client certificates (env FORCE_REGENERATE)"),
		keyType:    fs.String("key-type", envOr("JOBLET_KEY_TYPE", string(pki.ECDSAP256)), "ecdsa-p256, rsa-2048 or rsa-4096"),
		caLife:     fs.String("ca-lifetime", "1095d", "CA lifetime (days with d, or a duration)"),
		clientLife: fs.String("client-lifetime", "730d", "client certificate lifetime"),
		serverLife: fs.String("server-lifetime", "365d", "server certificate lifetime"),
		serverAddr: fs.String("server-address", envOr("JOBLET_SERVER_ADDRESS", ""), "this node's address for clients and its certificate (env JOBLET_SERVER_ADDRESS; default: the primary IP)"),
		listenAddr: fs.String("listen-address", envOr("JOBLET_LISTEN_ADDRESS", "0.0.0.0"), "address the server listens on (env JOBLET_LISTEN_ADDRESS)"),
		port:       fs.String("port", envOr("JOBLET_SERVER_PORT", strconv.Itoa(config.DefaultPort)), "server port (env JOBLET_SERVER_PORT)"),
		extra:      fs.String("additional-names", envOr("JOBLET_ADDITIONAL_NAMES", ""), "comma list of extra DNS names and IPs for the server certificate (env JOBLET_ADDITIONAL_NAMES)"),
		public:     fs.String("public-address", envOr("JOBLET_PUBLIC_ADDRESS", ""), "HOST[:PORT] of a load balancer in front of the fleet (env JOBLET_PUBLIC_ADDRESS)"),
		metrics:    fs.String("metrics-address", envOr("JOBLET_METRICS_ADDRESS", ""), "HOST:PORT for /metrics and /healthz (plain HTTP; default off) (env JOBLET_METRICS_ADDRESS)"),
		refresh:    fs.Duration("refresh-interval", 0, "how often the running server refreshes trust and renews from the store (default 5m)"),
		nodeID:     fs.String("node-id", envOr("JOBLET_NODE_ID", ""), "node id (default: kept from the existing config, else the EC2 instance id, else generated)"),
		asJSON:     fs.Bool("json", false, "print the result as JSON"),
	}
}

// options turns the flags into bootstrap options, without the store.
func (f *bootFlags) options(log *slog.Logger) (bootOptions, error) {
	o := bootOptions{}
	o.Home, o.Prefix, o.Log = *f.home, *f.sf.prefix, log
	o.BootstrapOptions = certs.BootstrapOptions{Home: *f.home, RefreshInterval: *f.refresh, MetricsAddress: *f.metrics, ListenAddress: *f.listenAddr,
		ServerAddress: *f.serverAddr, PublicAddress: *f.public, NodeID: *f.nodeID, AdditionalNames: pki.SplitList(*f.extra)}
	var err error
	if o.Force, err = parseBool("FORCE_REGENERATE", *f.force); err != nil {
		return o, err
	}
	if o.KeyType, err = pki.ParseKeyType(*f.keyType); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if o.CALifetime, err = parseLifetime("ca-lifetime", *f.caLife); err != nil {
		return o, err
	}
	if o.ClientLifetime, err = parseLifetime("client-lifetime", *f.clientLife); err != nil {
		return o, err
	}
	if o.ServerLifetime, err = parseLifetime("server-lifetime", *f.serverLife); err != nil {
		return o, err
	}
	if o.Port, err = strconv.Atoi(*f.port); err != nil || o.Port <= 0 || o.Port > 65535 {
		return o, fmt.Errorf("%w: port %q is not a TCP port (1-65535)", errUsage, *f.port)
	}
	if err := secretstore.ValidatePrefix(o.Prefix); err != nil {
		return o, fmt.Errorf("%w: %v", errUsage, err)
	}
	if o.ServerAddress == "" {
		o.ServerAddress = cloud.PrimaryIP()
	}
	return o, o.Validate()
}

func bootstrapCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs bootstrap", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := addBootFlags(fs)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	o, err := f.options(log)
	if err != nil {
		return err
	}
	ctx, cancel := f.sf.context()
	defer cancel()
	rs, err := f.sf.resolve(ctx, o.Home, log)
	if err != nil {
		return err
	}
	o.Store, o.StoreDesc, o.Mode, o.StoreRef = rs.Store, rs.Desc, rs.Mode, rs.Ref
	o.CAKMSKeyID, o.OpenKMS = *f.sf.caKMS, kms.OpenerFor(rs.Ref)
	if rs.Instance != nil {
		o.FallbackNodeID = rs.Instance.ID
	}
	return runBootstrap(ctx, o, *f.asJSON, stdout)
}

// bootOptions are the fleet's settings and this node's, as the flags give them.
type bootOptions struct {
	certs.Fleet
	certs.BootstrapOptions
}

func runBootstrap(ctx context.Context, o bootOptions, asJSON bool, stdout io.Writer) error {
	res, err := o.Fleet.Bootstrap(ctx, o.BootstrapOptions)
	if err != nil {
		return err
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(res)
	}
	printResult(stdout, res)
	return nil
}

// storeFlags are the flags every command that reaches the shared store takes.
type storeFlags struct {
	useSM, store, prefix, region, kmsKey, replicas *string
	caKMS                                          *string
	tags                                           tagFlags
	timeout                                        *time.Duration
}

// context bounds a whole command: every store call, retry and backoff.
func (sf storeFlags) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), *sf.timeout)
}

// tagFlags collects --tag KEY=VALUE.
type tagFlags map[string]string

func (t tagFlags) String() string { return fmt.Sprint(map[string]string(t)) }

func (t tagFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("use KEY=VALUE")
	}
	t[k] = val
	return nil
}

func addStoreFlags(fs *flag.FlagSet) storeFlags {
	tags := tagFlags{}
	fs.Var(tags, "tag", "KEY=VALUE tag for the secrets created in Secrets Manager (repeatable)")
	timeout := 2 * time.Minute
	if v, err := time.ParseDuration(os.Getenv("JOBLET_TIMEOUT")); err == nil && v > 0 {
		timeout = v
	}
	return storeFlags{
		tags:     tags,
		timeout:  fs.Duration("timeout", timeout, "the longest the command may take, retries included (env JOBLET_TIMEOUT)"),
		caKMS:    fs.String("ca-kms-key-id", envOr("JOBLET_CA_KMS_KEY_ID", ""), "AWS KMS key (ARN, id or alias; asymmetric, SIGN_VERIFY) that holds the CA's private key: <prefix>/ca-key is then never written or read (env JOBLET_CA_KMS_KEY_ID)"),
		kmsKey:   fs.String("kms-key-id", envOr("JOBLET_KMS_KEY_ID", ""), "KMS key (id, ARN or alias) that encrypts the secrets joblet creates (env JOBLET_KMS_KEY_ID)"),
		replicas: fs.String("replica-regions", envOr("JOBLET_REPLICA_REGIONS", ""), "comma list of regions to replicate new secrets to (env JOBLET_REPLICA_REGIONS)"),
		useSM:    fs.String("use-secrets-manager", envOr("USE_SECRETS_MANAGER", "auto"), "auto, true or false (env USE_SECRETS_MANAGER)"),
		store:    fs.String("store", envOr("JOBLET_STORE", ""), "shared store for an on-prem fleet: dir:PATH (env JOBLET_STORE)"),
		prefix:   fs.String("prefix", envOr("SECRETS_PREFIX", "joblet"), "secret name prefix (env SECRETS_PREFIX)"),
		region:   fs.String("region", envOr("EC2_REGION", os.Getenv("AWS_REGION")), "AWS region of Secrets Manager (env EC2_REGION, then AWS_REGION; default: the instance's)"),
	}
}

func (sf storeFlags) resolve(ctx context.Context, home string, log *slog.Logger) (*backend.ResolvedStore, error) {
	if err := secretstore.ValidatePrefix(*sf.prefix); err != nil {
		return nil, fmt.Errorf("%w: %v", errUsage, err)
	}
	var replicas []string
	for _, r := range pki.SplitList(*sf.replicas) {
		if r = strings.TrimSpace(r); r != "" {
			replicas = append(replicas, r)
		}
	}
	return backend.ResolveStore(ctx, backend.StoreRequest{UseSecretsManager: *sf.useSM, StoreSpec: *sf.store,
		Region: *sf.region, Home: home, Log: log, CAKMSKeyID: *sf.caKMS,
		SecretsManager: awssm.CreateOptions{KMSKeyID: *sf.kmsKey, ReplicaRegions: replicas, Tags: sf.tags}})
}

func printResult(w io.Writer, r *certs.Result) {
	icon := map[string]string{certs.Generated: "✨", certs.Retrieved: "✅", certs.Completed: "🔧"}
	verb := map[string]string{certs.Generated: "Generated and stored in", certs.Retrieved: "Retrieved from", certs.Completed: "Completed (certificate added for the stored key) in"}
	fmt.Fprintf(w, "joblet certificates (%s mode, node %s)\n", r.Mode, r.NodeID)
	if r.CAKMSKey != "" {
		fmt.Fprintf(w, "  🔐 CA private key: in AWS KMS (%s); every certificate is signed through kms:Sign, no CA key on this node\n", r.CAKMSKey)
	}
	for _, it := range r.Items {
		if it.Name == "Server Certificate" {
			fmt.Fprintf(w, "  🆕 %s: Generated locally (instance-specific), serial %s, expires %s\n", it.Name, it.Serial, it.NotAfter.Format("2006-01-02"))
			continue
		}
		fmt.Fprintf(w, "  %s %s: %s %s, expires %s\n", icon[it.Action], it.Name, verb[it.Action], it.Where, it.NotAfter.Format("2006-01-02"))
	}
	for _, wn := range r.Warnings {
		fmt.Fprintf(w, "  ⚠️  %s\n", wn)
	}
	fmt.Fprintln(w, "Files:")
	for _, f := range r.Files {
		fmt.Fprintf(w, "  %s\n", f)
	}
}
