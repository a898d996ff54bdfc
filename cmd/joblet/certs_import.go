package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func (c *cli) importCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "import --from-home DIR | --ca-cert F --ca-key F [--client ROLE=CERT,KEY]... [--force]",
		Short: "seed a shared store from an existing CA, keeping it",
		Args:  noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore|withCreate|withReplicas)
	var fromHome, fromPrefix, caCert, caKey string
	var force, asJSON bool
	clients := roleFiles{}
	fs.StringVar(&fromHome, "from-home", "", "an embedded install's JOBLET_HOME (its locally kept CA and role keys)")
	fs.StringVar(&fromPrefix, "from-prefix", certs.DefaultPrefix, "the secret prefix of that install's private store")
	fs.StringVar(&caCert, "ca-cert", "", "CA certificate file (PEM), with --ca-key")
	fs.StringVar(&caKey, "ca-key", "", "CA private key file (PEM)")
	fs.Var(clients, "client", "ROLE=CERT.pem,KEY.pem: a role's existing pair (repeatable; roles not given get new pairs)")
	fs.BoolVar(&force, "force", false, "replace a different CA already in the store (previous versions stay as AWSPREVIOUS)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.RunE = func(*cobra.Command, []string) error {
		m, err := material(fromHome, fromPrefix, caCert, caKey, clients)
		if err != nil {
			return err
		}
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		res, err := fl.Import(ctx, m, force)
		if err != nil {
			return err
		}
		if asJSON {
			return printJSON(c.stdout, res)
		}
		if res.Unchanged {
			fmt.Fprintf(c.stdout, "✅ %s already holds this CA (sha256 %s): nothing to do\n", fl.StoreDesc, res.CA.Fingerprint)
			return nil
		}
		fmt.Fprintf(c.stdout, "✨ CA Certificate: imported into %s, sha256 %s (unchanged: existing clients keep working)\n", fl.StoreDesc, res.CA.Fingerprint)
		for _, role := range pki.Roles {
			fmt.Fprintf(c.stdout, "   %s client certificate: %s\n", role, res.Clients[string(role)])
		}
		return nil
	}
	return cmd
}

// material reads what import was pointed at.
func material(fromHome, fromPrefix, caCert, caKey string, clients roleFiles) (*certs.Material, error) {
	switch {
	case fromHome != "" && (caCert != "" || caKey != ""):
		return nil, usagef("--from-home and --ca-cert/--ca-key contradict each other: give one source")
	case fromHome != "":
		return certs.MaterialFromHome(fromHome, fromPrefix)
	case caCert == "" || caKey == "":
		return nil, usagef("give --from-home DIR, or --ca-cert and --ca-key")
	}
	m := &certs.Material{Clients: map[pki.Role][2]string{}}
	var err error
	if m.CACert, err = readFile(caCert); err != nil {
		return nil, err
	}
	if m.CAKey, err = readFile(caKey); err != nil {
		return nil, err
	}
	for role, f := range clients {
		c, err := readFile(f[0])
		if err != nil {
			return nil, err
		}
		k, err := readFile(f[1])
		if err != nil {
			return nil, err
		}
		m.Clients[role] = [2]string{c, k}
	}
	return m, nil
}

// roleFiles collects --client ROLE=CERT,KEY flags.
type roleFiles map[pki.Role][2]string

func (r roleFiles) String() string {
	var s []string
	for role, f := range r {
		s = append(s, string(role)+"="+f[0]+","+f[1])
	}
	return strings.Join(s, " ")
}

func (r roleFiles) Set(v string) error {
	role, files, ok := strings.Cut(v, "=")
	cert, key, ok2 := strings.Cut(files, ",")
	if !ok || !ok2 {
		return fmt.Errorf("use ROLE=CERT.pem,KEY.pem")
	}
	rl, err := pki.ParseRole(role)
	if err != nil {
		return err
	}
	r[rl] = [2]string{cert, key}
	return nil
}

func (r roleFiles) Type() string { return "ROLE=CERT,KEY" }
