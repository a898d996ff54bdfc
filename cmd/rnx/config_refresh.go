package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ehsaniara/joblet/internal/atomicfile"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/login"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (a *app) configCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "config",
		Short: "Manage the rnx config",
		Args:  cobra.ArbitraryArgs,
		RunE:  group("init, refresh"),
	}
	c.AddCommand(a.configInitCmd(), a.configRefreshCmd())
	return c
}

func (a *app) configRefreshCmd() *cobra.Command {
	var role string
	var st storeArgs
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
			if err := a.loadRaw(); err != nil {
				return err
			}
			if a.cfg.Login != nil {
				return fmt.Errorf("%s is a config for people: `rnx login` gets you a certificate and keeps its trust current (no store access needed)", a.path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			fl, err := st.fleet(ctx)
			if err != nil {
				return err
			}
			res, err := fl.RefreshClientConfig(ctx, a.path, only)
			if err != nil {
				return err
			}
			for _, p := range res.Problems {
				// The config keeps the CRL it had: say why, loudly.
				fmt.Fprintln(a.errOut, "rnx: warning:", p)
			}
			fmt.Fprintf(a.out, "refreshed %s from %s: nodes %s\n", a.path, fl.StoreDesc, strings.Join(res.Updated, ", "))
			return deadAfterRefresh(a.path, res.Updated)
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "refresh only the nodes of this role")
	st.add(f)
	return c
}

// storeArgs say where a client's store is (USE_SECRETS_MANAGER as for
// joblet): what config init and refresh read from.
type storeArgs struct{ prefix, storeSpec, region string }

func (s *storeArgs) add(f *pflag.FlagSet) {
	backend.PrefixFlag(f, &s.prefix)
	f.StringVar(&s.storeSpec, "store", os.Getenv("JOBLET_STORE"), "a directory store: dir:PATH (env JOBLET_STORE)")
	f.StringVar(&s.region, "region", config.EnvOr("EC2_REGION", os.Getenv("AWS_REGION")), "AWS region (env EC2_REGION, AWS_REGION)")
}

// fleet opens the store the args name, with what a client may read.
func (s *storeArgs) fleet(ctx context.Context) (*certs.Fleet, error) {
	rs, err := backend.ResolveStore(ctx, backend.StoreRequest{UseSecretsManager: config.EnvOr("USE_SECRETS_MANAGER", "auto"),
		StoreSpec: s.storeSpec, Region: s.region, Home: config.Home()})
	if err != nil {
		return nil, err
	}
	return &certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: s.prefix}, nil
}

func (a *app) configInitCmd() *cobra.Command {
	var role, address, name, fingerprint, issuerURL, issuerCA string
	var force bool
	var st storeArgs
	c := &cobra.Command{
		Use:   "init (--role ROLE | --issuer URL) --address HOST:PORT [--name NAME]",
		Short: "Create (or add a node to) an rnx config: from the store for one role, or from the issuer for people (rnx login)",
		Long: `Get a client config from the fleet's store, with what the client-<role>
policy allows (joblet certs iam-policy --for client-ROLE): the CA certificate,
the trust bundle, the CRL and that role's certificate and key. No node is
needed. With --ca-fingerprint (as ` + "`joblet certs init`" + ` prints it) a
store whose root CA is another is refused. The config goes to --config, else $RNX_CONFIG, else ~/.rnx/rnx-config.yml;
an existing file gets the node entry added (an entry of the same name is
refused unless --force).

With --issuer instead of --role, the config is for people: no certificate or
key, the fleet's trust from the issuer (checked against --ca-fingerprint when
given), and the issuer remembered for ` + "`rnx login`" + `, which then gets each
person a certificate of their own. No store access is needed.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if address == "" {
				return usagef(cmd, "--address is required: HOST:PORT of the fleet's load balancer or of a node")
			}
			var r pki.Role
			switch {
			case issuerURL != "" && role != "":
				return usagef(cmd, "give --role (a shared role's certificate from the store) or --issuer (people, rnx login), not both")
			case issuerURL == "":
				var err error
				if r, err = pki.ParseRole(role); err != nil {
					return usagef(cmd, "--role: %v", err)
				}
			}
			var pin *pki.Pin
			if fingerprint != "" {
				p, err := pki.ParsePin(fingerprint)
				if err != nil {
					return usagef(cmd, "--ca-fingerprint/JOBLET_CA_FINGERPRINT: %v", err)
				}
				pin = &p
			}
			path := a.cfgPath
			if path == "" {
				path = os.Getenv("RNX_CONFIG")
			}
			if path == "" {
				home, err := os.UserHomeDir()
				if err != nil {
					return fmt.Errorf("no home directory for ~/.rnx/rnx-config.yml: pass --config PATH (%w)", err)
				}
				path = filepath.Join(home, ".rnx", "rnx-config.yml")
			}
			cfg := &config.Rnx{Version: config.RnxVersion, Nodes: map[string]*config.Node{}}
			if _, err := os.Stat(path); err == nil {
				if cfg, err = config.LoadRnx(path); err != nil {
					return err
				}
				if cfg.Nodes[name] != nil && !force {
					return usagef(cmd, "%s already has a node %q: pick another --name, or pass --force to replace it", path, name)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			var node *config.Node
			from := ""
			if issuerURL != "" {
				var ca string
				if issuerCA != "" {
					b, err := os.ReadFile(issuerCA)
					if err != nil {
						return usagef(cmd, "--issuer-ca: %v", err)
					}
					ca = string(b)
				}
				n, err := login.PeopleNode(ctx, issuerURL, ca, address, pin)
				if err != nil {
					return err
				}
				if pin == nil {
					fmt.Fprintf(a.errOut, "rnx: warning: NO PIN: this config trusts the roots the issuer at %s sent, checked against nothing but its HTTPS certificate; give --ca-fingerprint (as `joblet certs init` printed it) to refuse any other\n", issuerURL)
				}
				node, from = n, issuerURL
				if cfg.Login == nil || force {
					cfg.Login = &config.Login{Issuer: issuerURL, IssuerCA: ca}
				} else if cfg.Login.Issuer != issuerURL {
					return usagef(cmd, "%s logs in at %s, not %s: pass --force to change it", path, cfg.Login.Issuer, issuerURL)
				}
			} else {
				fl, err := st.fleet(ctx)
				if err != nil {
					return err
				}
				fl.Pin = pin
				if node, err = fl.ClientNode(ctx, r, address); err != nil {
					return err
				}
				from = fl.StoreDesc
			}
			node.IsDefault = len(cfg.Nodes) == 0 || (cfg.Nodes[name] != nil && cfg.Nodes[name].IsDefault)
			cfg.Nodes[name] = node
			b, err := cfg.Marshal()
			if err != nil {
				return err
			}
			if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
				return err
			}
			if err := atomicfile.WriteFile(path, b, 0o600); err != nil {
				return err
			}
			if issuerURL != "" {
				fmt.Fprintf(a.out, "wrote node %q (people: rnx login, %s) to %s from %s\nnext: rnx login\n", name, address, path, from)
				return nil
			}
			fmt.Fprintf(a.out, "wrote node %q (%s role, %s) to %s from %s\n", name, r, address, path, from)
			return nil
		},
	}
	f := c.Flags()
	f.StringVar(&role, "role", "", "the role: admin, maintainer, developer or reader")
	f.StringVar(&issuerURL, "issuer", "", "a config for people instead: the issuer's https:// URL (rnx login)")
	f.StringVar(&issuerCA, "issuer-ca", "", "with --issuer: PEM file of the CA the issuer's HTTPS certificate chains to, when not a public one")
	f.StringVar(&address, "address", "", "HOST:PORT of the fleet's load balancer or of a node")
	f.StringVar(&name, "name", "default", "the node entry's name in the config")
	f.BoolVar(&force, "force", false, "replace a node entry of the same name")
	f.StringVar(&fingerprint, "ca-fingerprint", config.EnvOr("JOBLET_CA_FINGERPRINT", ""), "SHA-256 fingerprint of the fleet's root CA certificate, as `joblet certs init` prints it (hex, colons and `sha256:` optional): a store whose root is another is refused, nothing written (env JOBLET_CA_FINGERPRINT)")
	st.add(f)
	return c
}

// deadAfterRefresh fails a refresh that fetched a certificate no node
// accepts: the store's certificate for the role expired or was revoked
// (the refreshed CRL lists it). The trust and CRL were still worth
// writing; the fix is the operator's re-issue, which the error names.
func deadAfterRefresh(path string, updated []string) error {
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return err
	}
	var dead []string
	for _, name := range updated {
		if n := cfg.Nodes[name]; n != nil {
			if err := client.DeadCert(n, time.Now()); err != nil {
				dead = append(dead, fmt.Sprintf("node %q: %v", name, err))
			}
		}
	}
	if len(dead) == 0 {
		return nil
	}
	return fmt.Errorf("the store's certificate is unusable, so no node will accept this config: %s", strings.Join(dead, "; "))
}
