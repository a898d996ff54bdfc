package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/backend/kms"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
)

func (c *cli) certsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "certs",
		Short: "manage the certificates the fleet serves and connects with",
		Args:  subcommandArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return needSubcommand(cmd) },
	}
	cmd.AddCommand(c.bootstrapCmd(), c.statusCmd(), c.iamPolicyCmd(), c.importCmd(), c.exportCmd(),
		c.replicateCmd(), c.revokeCmd(), c.reissueCmd(), c.pruneCmd(), c.renewCmd(), c.rotateCmd(), c.nodeCACmd(), c.rotateSecretCmd(), c.scheduleCmd(), c.initCmd(), c.trustCmd(), c.identityPolicyCmd(), c.userCACmd())
	return cmd
}

// storeSet picks the store flags a command registers, beyond the ones every
// store command takes (--use-secrets-manager, --region, --prefix, --timeout).
type storeSet int

const (
	withDirStore storeSet = 1 << iota // --store dir:PATH
	withCreate                        // --kms-key-id, --tag: options of secrets the command may create
	withReplicas                      // --replica-regions
	withCAKMS                         // --ca-kms-key-id
)

// storeFlags are the flags that say where the shared store is. Each
// defaults from its environment variable.
type storeFlags struct {
	useSM, store, prefix, region, kmsKey, replicas, caKMS string
	pin                                                   string
	tags                                                  tagFlags
	timeout                                               time.Duration
}

func addStoreFlags(fs *pflag.FlagSet, set storeSet) *storeFlags {
	sf := &storeFlags{tags: tagFlags{}, timeout: 2 * time.Minute}
	if v, err := time.ParseDuration(os.Getenv("JOBLET_TIMEOUT")); err == nil && v > 0 {
		sf.timeout = v
	}
	fs.StringVar(&sf.useSM, "use-secrets-manager", config.EnvOr("USE_SECRETS_MANAGER", "auto"), "auto, true or false (env USE_SECRETS_MANAGER)")
	fs.StringVar(&sf.region, "region", config.EnvOr("EC2_REGION", os.Getenv("AWS_REGION")), "AWS region of Secrets Manager (env EC2_REGION, then AWS_REGION; default: the instance's)")
	backend.PrefixFlag(fs, &sf.prefix)
	fs.DurationVar(&sf.timeout, "timeout", sf.timeout, "the longest the command may take, retries included (env JOBLET_TIMEOUT)")
	fs.StringVar(&sf.pin, "ca-fingerprint", config.EnvOr("JOBLET_CA_FINGERPRINT", ""), "SHA-256 fingerprint of the fleet's root CA certificate, as `joblet certs init` prints it (hex, colons and `sha256:` optional): a store whose root it does not reach (itself, or through the signed trust state's rotations) is refused, nothing written (env JOBLET_CA_FINGERPRINT)")
	if set&withDirStore != 0 {
		fs.StringVar(&sf.store, "store", config.EnvOr("JOBLET_STORE", ""), "shared store for an on-prem fleet: dir:PATH (env JOBLET_STORE)")
	}
	if set&withCreate != 0 {
		fs.StringVar(&sf.kmsKey, "kms-key-id", config.EnvOr("JOBLET_KMS_KEY_ID", ""), "KMS key (id, ARN or alias) that encrypts the secrets joblet creates (env JOBLET_KMS_KEY_ID)")
		fs.Var(sf.tags, "tag", "KEY=VALUE tag for the secrets created in Secrets Manager (repeatable)")
	}
	if set&withReplicas != 0 {
		fs.StringVar(&sf.replicas, "replica-regions", config.EnvOr("JOBLET_REPLICA_REGIONS", ""), "comma list of regions to replicate secrets to (env JOBLET_REPLICA_REGIONS)")
	}
	if set&withCAKMS != 0 {
		fs.StringVar(&sf.caKMS, "ca-kms-key-id", config.EnvOr("JOBLET_CA_KMS_KEY_ID", ""), "AWS KMS key (ARN, id or alias; asymmetric, SIGN_VERIFY) that holds the CA's private key: <prefix>/ca-key is then never written or read (env JOBLET_CA_KMS_KEY_ID)")
	}
	return sf
}

// context bounds a whole command: every store call, retry and backoff.
func (sf *storeFlags) context() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), sf.timeout)
}

// open checks the flags and resolves the store they name (home holds the
// embedded mode's local store).
func (sf *storeFlags) open(ctx context.Context, home string, log *slog.Logger) (*backend.ResolvedStore, error) {
	if _, err := sf.parsedPin(); err != nil {
		return nil, err
	}
	var replicas []string
	for _, r := range pki.SplitList(sf.replicas) {
		if r = strings.TrimSpace(r); r != "" {
			replicas = append(replicas, r)
		}
	}
	return backend.ResolveStore(ctx, backend.StoreRequest{UseSecretsManager: sf.useSM, StoreSpec: sf.store,
		Region: sf.region, Home: home, Log: log, CAKey: sf.caKey(sf.region),
		SecretsManager: awssm.CreateOptions{KMSKeyID: sf.kmsKey, ReplicaRegions: replicas, Tags: sf.tags}})
}

// caKey is the CA key --ca-kms-key-id names: the one place the flag
// becomes a reference. Its region is the key ARN's own, else storeRegion,
// the region of the Secrets Manager store the command opened (where the
// key was always looked up; certs.KMSKeyRef).
func (sf *storeFlags) caKey(storeRegion string) certs.CAKeyRef {
	return certs.KMSKeyRef(sf.caKMS, storeRegion)
}

// fleet is the fleet the flags name, in the resolved store; its CA key is
// opened through KMS where the store is Secrets Manager.
func (sf *storeFlags) fleet(rs *backend.ResolvedStore, log *slog.Logger) *certs.Fleet {
	pin, _ := sf.parsedPin() // checked by open
	return &certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: sf.prefix, OpenKMS: kms.OpenerFor(rs.Ref), KMSRegion: rs.Ref.Region, Log: log, Pin: pin,
		SeenDir: seenDir()}
}

// seenDir is where this machine's operator commands keep the newest trust
// state they verified (certs/operatorseen.go): JOBLET_SEEN_DIR, else
// HOME/seen under the joblet home; "off" keeps none.
func seenDir() string {
	switch d := os.Getenv("JOBLET_SEEN_DIR"); d {
	case "off":
		return ""
	case "":
		return filepath.Join(config.Home(), "seen")
	default:
		return d
	}
}

// parsedPin is the root --ca-fingerprint pins, nil when not given.
func (sf *storeFlags) parsedPin() (*pki.Pin, error) {
	if sf.pin == "" {
		return nil, nil
	}
	pin, err := pki.ParsePin(sf.pin)
	if err != nil {
		return nil, usagef("--ca-fingerprint/JOBLET_CA_FINGERPRINT: %v", err)
	}
	return &pin, nil
}

// openFleet resolves the store the flags name (home holds an embedded
// node's store) and returns the fleet in it: the preamble of every
// operator command.
func (sf *storeFlags) openFleet(ctx context.Context, home string, log *slog.Logger) (*certs.Fleet, error) {
	rs, err := sf.open(ctx, home, log)
	if err != nil {
		return nil, err
	}
	return sf.fleet(rs, log), nil
}

// nodeFleet is the fleet a node's server config names.
func nodeFleet(ctx context.Context, cfg *config.Server, log *slog.Logger) (*certs.Fleet, error) {
	st, desc, err := backend.OpenStore(ctx, cfg.Store, log)
	if err != nil {
		return nil, err
	}
	return &certs.Fleet{Store: st, StoreDesc: desc, Prefix: cfg.Store.Prefix, OpenKMS: kms.OpenerFor(cfg.Store), KMSRegion: cfg.Store.Region, Log: log}, nil
}

// tagFlags collects --tag KEY=VALUE.
type tagFlags map[string]string

func (t tagFlags) String() string {
	var kv []string
	for k, v := range t {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func (t tagFlags) Set(v string) error {
	k, val, ok := strings.Cut(v, "=")
	if !ok || k == "" {
		return fmt.Errorf("use KEY=VALUE")
	}
	t[k] = val
	return nil
}

func (t tagFlags) Type() string { return "KEY=VALUE" }

func parseBool(name, v string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	}
	return false, usagef("%s=%q: use true or false", name, v)
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
		return 0, usagef("--%s %q: use a positive number of days (365d) or a duration (720h)", flagName, v)
	}
	return d, nil
}

func parseKeyType(v string) (pki.KeyType, error) {
	kt, err := pki.ParseKeyType(v)
	if err != nil {
		return "", usagef("%v", err)
	}
	return kt, nil
}

func addKeyTypeFlag(fs *pflag.FlagSet, p *string, what string) {
	fs.StringVar(p, "key-type", config.EnvOr("JOBLET_KEY_TYPE", string(pki.ECDSAP256)), what+": ecdsa-p256, rsa-2048 or rsa-4096 (env JOBLET_KEY_TYPE)")
}

// printJSON writes v indented.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return string(b), nil
}
