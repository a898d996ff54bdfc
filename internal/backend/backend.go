// Package backend resolves where a fleet's shared state lives, from the
// operator's flags and environment and EC2 detection (the spec's mode
// table): an AWS Secrets Manager store, a directory store, or an embedded
// node's private directory store. It links no KMS code (rnx uses it); the
// CA's KMS key is opened through backend/kms.
package backend

import (
	"context"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/awsconf"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/cloud"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
)

// ErrUsage marks a request that contradicts itself or names an unknown
// mode: the caller's input, not the environment, is wrong.
var ErrUsage = config.ErrUsage

// StoreRequest is what the operator asked for.
type StoreRequest struct {
	UseSecretsManager string // auto, true, false (USE_SECRETS_MANAGER)
	StoreSpec         string // dir:PATH, or empty
	Region            string // explicit region (--region, EC2_REGION, AWS_REGION), or empty
	Home              string
	IMDSTimeout       time.Duration
	// Firmware is the root the EC2 hint reads (os.DirFS("/") in production).
	Firmware fs.FS
	// SecretsManager: KMS key, replica regions and tags for new secrets.
	SecretsManager awssm.CreateOptions
	// CAKey in KMS: the CA's private key is that AWS KMS key (needs
	// Secrets Manager mode).
	CAKey certs.CAKeyRef
	Log   *slog.Logger
}

// ResolvedStore is the store a bootstrap uses and why.
type ResolvedStore struct {
	Store    secretstore.Store
	Desc     string
	Mode     config.StoreMode
	Ref      config.StoreRef // how to open it again (the server does)
	Instance *cloud.Instance // set when on EC2
}

// OpenStore opens the store a server config points at.
func OpenStore(ctx context.Context, ref config.StoreRef, log *slog.Logger) (secretstore.Store, string, error) {
	switch ref.Kind {
	case config.ModeDir:
		st, err := secretstore.NewDirStore(ref.Dir)
		return st, "directory store " + ref.Dir, err
	case config.ModeSecretsManager:
		st, err := awssm.Open(ctx, awssm.Options{Options: awsconf.Options{Region: ref.Region}}, log)
		if err != nil {
			return nil, "", err
		}
		return st, st.Describe(), nil
	}
	return nil, "", fmt.Errorf("the server config has no store section (store.kind %q): re-run `joblet certs bootstrap` to add it", ref.Kind)
}

// Reopen resolves the store an installed node's config names (ref), as a
// re-run of bootstrap without store settings finds it: the node stays in
// its fleet instead of auto mode deciding again (a user-data script re-run
// on reboot must not fork a node off a shared store).
func Reopen(ctx context.Context, ref config.StoreRef, home string, log *slog.Logger) (*ResolvedStore, error) {
	st, desc, err := OpenStore(ctx, ref, log)
	if err != nil {
		return nil, err
	}
	mode := ref.Kind
	if ref.EmbeddedIn(home) {
		mode = config.ModeEmbedded
	}
	return &ResolvedStore{Store: st, Desc: desc, Mode: mode, Ref: config.StoreRef{Kind: ref.Kind, Region: ref.Region, Dir: ref.Dir}}, nil
}

// secretsManagerOnly names the options given that only Secrets Manager
// honours: accepting them in another mode would silently drop them.
func (r StoreRequest) secretsManagerOnly() []string {
	var given []string
	if r.SecretsManager.KMSKeyID != "" {
		given = append(given, "--kms-key-id/JOBLET_KMS_KEY_ID")
	}
	if len(r.SecretsManager.ReplicaRegions) > 0 {
		given = append(given, "--replica-regions/JOBLET_REPLICA_REGIONS")
	}
	if len(r.SecretsManager.Tags) > 0 {
		given = append(given, "--tag")
	}
	if r.CAKey.InKMS() {
		given = append(given, "--ca-kms-key-id/JOBLET_CA_KMS_KEY_ID")
	}
	return given
}

// ResolveStore applies the spec's mode table. "auto" means Secrets Manager
// on EC2 and embedded elsewhere; when Secrets Manager is required and
// cannot be used this fails: it never falls back to a private CA (the
// spec's unsupported "mixed mode").
func ResolveStore(ctx context.Context, r StoreRequest) (*ResolvedStore, error) {
	if r.IMDSTimeout == 0 {
		r.IMDSTimeout = cloud.DefaultIMDSTimeout
	}
	if r.Firmware == nil {
		r.Firmware = os.DirFS("/")
	}
	if r.Log == nil {
		r.Log = slog.Default()
	}
	mode := strings.ToLower(strings.TrimSpace(r.UseSecretsManager))
	switch mode {
	case "", "auto":
		mode = "auto"
	case "true", "false":
	default:
		return nil, fmt.Errorf("%w: USE_SECRETS_MANAGER=%q: use auto, true or false", ErrUsage, r.UseSecretsManager)
	}
	if r.StoreSpec != "" {
		if opts := r.secretsManagerOnly(); len(opts) > 0 {
			return nil, fmt.Errorf("%w: %s apply to Secrets Manager only, but --store %s was given: drop them, or drop --store and set USE_SECRETS_MANAGER=true", ErrUsage, strings.Join(opts, ", "), r.StoreSpec)
		}
		if mode == "true" {
			return nil, fmt.Errorf("%w: --store %s and USE_SECRETS_MANAGER=true contradict each other: use one shared store (unset JOBLET_STORE/--store, or set USE_SECRETS_MANAGER=false)", ErrUsage, r.StoreSpec)
		}
		kind, arg, err := secretstore.ParseStoreSpec(r.StoreSpec)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUsage, err)
		}
		if config.StoreMode(kind) != config.ModeDir {
			return nil, fmt.Errorf("%w: --store %q: unknown store kind %q (use dir:PATH)", ErrUsage, r.StoreSpec, kind)
		}
		st, err := secretstore.NewDirStore(arg)
		if err != nil {
			return nil, err
		}
		return &ResolvedStore{Store: st, Desc: "directory store " + arg, Mode: config.ModeDir, Ref: config.StoreRef{Kind: config.ModeDir, Dir: arg}}, nil
	}

	var inst *cloud.Instance
	if mode != "false" {
		i, err := cloud.DetectEC2(ctx, r.IMDSTimeout)
		switch {
		case err == nil:
			inst = &i
			r.Log.Debug("on EC2", "instance", i.ID, "region", i.Region)
		case mode == "auto":
			if yes, why := cloud.LooksLikeEC2(r.Firmware); yes {
				return nil, fmt.Errorf("this machine looks like an EC2 instance (%s) but the instance metadata service did not answer (%v), so auto mode cannot tell whether the fleet uses Secrets Manager. "+
					"Set USE_SECRETS_MANAGER=true with EC2_REGION, or USE_SECRETS_MANAGER=false for a standalone node; on containers, raise the IMDS hop limit", why, err)
			}
			if opts := r.secretsManagerOnly(); len(opts) > 0 {
				return nil, fmt.Errorf("%w: %s apply to Secrets Manager only, but USE_SECRETS_MANAGER=auto found no EC2 instance metadata (%v), which means embedded mode: set USE_SECRETS_MANAGER=true with a region to use Secrets Manager from here, or drop them", ErrUsage, strings.Join(opts, ", "), err)
			}
			r.Log.Debug("not on EC2: embedded mode", "cause", err)
			mode = "false"
		default: // true: fine off EC2 as long as a region is given
			r.Log.Debug("instance metadata unavailable", "cause", err)
		}
	}
	if mode == "false" {
		if opts := r.secretsManagerOnly(); len(opts) > 0 { // (auto off EC2 was refused above)
			return nil, fmt.Errorf("%w: %s apply to Secrets Manager only, but USE_SECRETS_MANAGER=false: drop them, or set USE_SECRETS_MANAGER=true", ErrUsage, strings.Join(opts, ", "))
		}
		root := filepath.Join(r.Home, "ca")
		st, err := secretstore.NewDirStore(root)
		if err != nil {
			return nil, err
		}
		return &ResolvedStore{Store: st, Desc: "directory store " + root, Mode: config.ModeEmbedded, Ref: config.StoreRef{Kind: config.ModeDir, Dir: root}}, nil
	}

	region := r.Region
	if region == "" && inst != nil {
		region = inst.Region
	}
	if region == "" {
		return nil, fmt.Errorf("USE_SECRETS_MANAGER=true needs an AWS region: set --region, EC2_REGION or AWS_REGION (the instance metadata service, which gives it on EC2, did not answer)")
	}
	st, err := awssm.Open(ctx, awssm.Options{Options: awsconf.Options{Region: region}, Create: r.SecretsManager}, r.Log)
	if err != nil {
		return nil, err
	}
	ref := config.StoreRef{Kind: config.ModeSecretsManager, Region: region}
	return &ResolvedStore{Store: st, Desc: st.Describe(), Mode: config.ModeSecretsManager, Instance: inst, Ref: ref}, nil
}
