package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/awsconf"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/login"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (a *app) loginCmd() *cobra.Command {
	var issuerURL, issuerCA string
	var lifetime time.Duration
	c := &cobra.Command{
		Use:   "login [--issuer URL] [--lifetime 8h]",
		Short: "Get a certificate for yourself, for hours, from your AWS identity",
		Long: `Gets a short-lived client certificate that names you, from the fleet's issuer,
with the AWS credentials you already have (environment, profile, SSO; the same
as the aws CLI's). The key is made here and never leaves this machine; the
proof sent to the issuer is an STS GetCallerIdentity request signed for this
fleet and this key only. The certificate is written next to the config
(<config>.login.pem) and every rnx command uses it until it expires; they warn
30 minutes before. The role is the one the fleet's identity policy gives you.

--issuer and --issuer-ca are remembered in the config.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.loadRaw(); err != nil {
				return err
			}
			changed := false
			if issuerURL != "" || issuerCA != "" {
				if a.cfg.Login == nil {
					a.cfg.Login = &config.Login{}
				}
				if issuerURL != "" && issuerURL != a.cfg.Login.Issuer {
					a.cfg.Login.Issuer, changed = issuerURL, true
				}
				if issuerCA != "" {
					pem, err := os.ReadFile(issuerCA)
					if err != nil {
						return usagef(cmd, "--issuer-ca: %v", err)
					}
					if string(pem) != a.cfg.Login.IssuerCA {
						a.cfg.Login.IssuerCA, changed = string(pem), true
					}
				}
			}
			if a.cfg.Login == nil || a.cfg.Login.Issuer == "" {
				return usagef(cmd, "no issuer: give --issuer URL (your operator's `joblet issuer` or its function URL); it is remembered in %s", a.path)
			}
			ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
			defer cancel()
			aws, err := awsconf.Load(ctx, awsconf.Options{MaxAttempts: 3})
			if err != nil {
				return err
			}
			got, hello, err := login.Do(ctx, login.Options{Issuer: a.cfg.Login.Issuer, IssuerCA: a.cfg.Login.IssuerCA, AWS: aws, Lifetime: lifetime, Now: time.Now})
			if err != nil {
				return fmt.Errorf("login: %w", err)
			}
			path := login.Path(a.path)
			if err := login.Save(path, got); err != nil {
				return fmt.Errorf("login: write %s: %w", path, err)
			}
			if login.TakeTrust(a.cfg, hello) {
				changed = true
				fmt.Fprintln(a.out, "✓ took the fleet's newer trust state from the issuer (signed by a root this config trusts)")
			}
			if changed {
				b, err := a.cfg.Marshal()
				if err != nil {
					return err
				}
				if err := atomicfile.WriteFile(a.path, b, 0o600); err != nil {
					return fmt.Errorf("remember the issuer in %s: %w", a.path, err)
				}
			}
			fmt.Fprintf(a.out, "✓ logged in as %s (%s) until %s\n", got.Person, got.Role, got.Expires.Local().Format(time.RFC1123))
			return nil
		},
	}
	c.Flags().StringVar(&issuerURL, "issuer", "", "the issuer's https:// URL (remembered in the config)")
	c.Flags().StringVar(&issuerCA, "issuer-ca", "", "PEM file of the CA the issuer's HTTPS certificate chains to, trusted alone in place of the system's roots (remembered)")
	c.Flags().DurationVar(&lifetime, "lifetime", 0, "how long the certificate should live (the issuer caps it; default its own, 8h)")
	return c
}

func (a *app) whoamiCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "whoami",
		Short: "Show who the fleet sees: your login's person, role and expiry, or the config's shared role",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.loadRaw(); err != nil {
				return err
			}
			type who struct {
				Person  string    `json:"person,omitempty"`
				Serial  string    `json:"serial"`
				Role    pki.Role  `json:"role"`
				Shared  bool      `json:"shared"`
				Expires time.Time `json:"expires"`
				Expired bool      `json:"expired"`
			}
			var w who
			if c, err := login.Load(login.Path(a.path)); err == nil {
				w = who{Person: c.Person, Role: c.Role, Serial: c.Serial, Expires: c.Expires, Expired: !time.Now().Before(c.Expires)}
			} else if !os.IsNotExist(err) {
				return err
			} else {
				_, node, err := a.cfg.Select(a.nodeName)
				if err != nil {
					return err
				}
				if node.Cert == "" {
					return fmt.Errorf("nobody: this config is for people and you have not logged in: run `rnx login`")
				}
				leaf, _, err := pki.ParseChain([]byte(node.Cert))
				if err != nil {
					return err
				}
				role, err := pki.RoleOf(leaf)
				if err != nil {
					return err
				}
				w = who{Role: role, Shared: true, Serial: pki.SerialHex(leaf.SerialNumber), Expires: leaf.NotAfter, Expired: !time.Now().Before(leaf.NotAfter)}
			}
			if asJSON {
				return writeJSON(a.out, w)
			}
			switch {
			case w.Shared:
				fmt.Fprintf(a.out, "the shared %s certificate of %s (no person; valid until %s)\n", w.Role, a.path, w.Expires.Local().Format(time.RFC1123))
			case w.Expired:
				fmt.Fprintf(a.out, "%s as %s: expired at %s: run `rnx login`\n", w.Person, w.Role, w.Expires.Local().Format(time.RFC1123))
			default:
				fmt.Fprintf(a.out, "%s as %s until %s (%s left; serial %s)\n", w.Person, w.Role, w.Expires.Local().Format(time.RFC1123), time.Until(w.Expires).Round(time.Minute), w.Serial)
			}
			return nil
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}
