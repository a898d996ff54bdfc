package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/secretstore/awssm"
)

// roleFiles collects --client ROLE=CERT,KEY flags.
type roleFiles map[pki.Role][2]string

func (r roleFiles) String() string { return fmt.Sprint(map[pki.Role][2]string(r)) }

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

func importCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs import", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	fromHome := fs.String("from-home", "", "an embedded install's JOBLET_HOME (its locally kept CA and role keys)")
	fromPrefix := fs.String("from-prefix", "joblet", "the secret prefix of that install's private store")
	caCert := fs.String("ca-cert", "", "CA certificate file (PEM), with --ca-key")
	caKey := fs.String("ca-key", "", "CA private key file (PEM)")
	clients := roleFiles{}
	fs.Var(clients, "client", "ROLE=CERT.pem,KEY.pem: a role's existing pair (repeatable; roles not given get new pairs)")
	force := fs.Bool("force", false, "replace a different CA already in the store (previous versions stay as AWSPREVIOUS)")
	asJSON := fs.Bool("json", false, "print the result as JSON")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	var m *certs.Material
	var err error
	switch {
	case *fromHome != "" && (*caCert != "" || *caKey != ""):
		return fmt.Errorf("%w: --from-home and --ca-cert/--ca-key contradict each other: give one source", errUsage)
	case *fromHome != "":
		if m, err = certs.MaterialFromHome(*fromHome, *fromPrefix); err != nil {
			return err
		}
	case *caCert != "" && *caKey != "":
		m = &certs.Material{Clients: map[pki.Role][2]string{}}
		if m.CACert, err = readFile(*caCert); err != nil {
			return err
		}
		if m.CAKey, err = readFile(*caKey); err != nil {
			return err
		}
		for role, f := range clients {
			c, err := readFile(f[0])
			if err != nil {
				return err
			}
			k, err := readFile(f[1])
			if err != nil {
				return err
			}
			m.Clients[role] = [2]string{c, k}
		}
	default:
		return fmt.Errorf("%w: give --from-home DIR, or --ca-cert and --ca-key", errUsage)
	}
	ctx, cancel := sf.context()
	defer cancel()
	rs, err := sf.resolve(ctx, jobletHome(), log)
	if err != nil {
		return err
	}
	res, err := (&certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: *sf.prefix}).Import(ctx, m, *force)
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(res)
	}
	if res.Unchanged {
		fmt.Fprintf(stdout, "✅ %s already holds this CA (sha256 %s): nothing to do\n", rs.Desc, res.CA.Fingerprint)
		return nil
	}
	fmt.Fprintf(stdout, "✨ CA Certificate: imported into %s, sha256 %s (unchanged: existing clients keep working)\n", rs.Desc, res.CA.Fingerprint)
	for _, role := range pki.Roles {
		fmt.Fprintf(stdout, "   %s client certificate: %s\n", role, res.Clients[string(role)])
	}
	return nil
}

func readFile(p string) (string, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", p, err)
	}
	return string(b), nil
}

// exportCmd writes an embedded install from a shared store: the shared
// secrets go into HOME/ca (the private store), then bootstrap writes the
// config files from it.
func exportCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	f := addBootFlags(fs)
	replace := fs.Bool("replace", false, "replace a different CA already in HOME/ca")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	o, err := f.options(log)
	if err != nil {
		return err
	}
	ctx, cancel := f.sf.context()
	defer cancel()
	src, err := f.sf.resolve(ctx, o.Home, log)
	if err != nil {
		return err
	}
	if src.Mode == "embedded" {
		return fmt.Errorf("%w: export reads a shared store: set USE_SECRETS_MANAGER=true (or --store dir:PATH)", errUsage)
	}
	root := filepath.Join(o.Home, "ca")
	dst, err := secretstore.NewDirStore(root)
	if err != nil {
		return err
	}
	if err := (&certs.Fleet{Store: src.Store, StoreDesc: src.Desc, Prefix: o.Prefix}).Export(ctx, dst, *replace); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported the shared certificates from %s into %s\n", src.Desc, root)
	o.Store, o.StoreDesc, o.Mode, o.StoreRef = dst, "directory store "+root, "embedded", config.StoreRef{Kind: "dir", Dir: root}
	return runBootstrap(ctx, o, *f.asJSON, stdout)
}

// replicateCmd replicates the existing shared secrets to more regions.
func replicateCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs replicate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	ctx, cancel := sf.context()
	defer cancel()
	rs, err := sf.resolve(ctx, jobletHome(), log)
	if err != nil {
		return err
	}
	st, ok := rs.Store.(*awssm.Store)
	if !ok {
		return fmt.Errorf("%w: replicate works on Secrets Manager: set USE_SECRETS_MANAGER=true", errUsage)
	}
	n := certs.Names{Prefix: *sf.prefix}
	vals, err := st.Get(ctx, append(n.All(), n.Bundle()))
	if err != nil {
		return err
	}
	var names []string
	for _, name := range append(n.All(), n.Bundle()) {
		if _, ok := vals[name]; ok {
			names = append(names, name)
		}
	}
	if err := st.Replicate(ctx, names); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "replicated %d secrets to %s\n", len(names), *sf.replicas)
	return nil
}
