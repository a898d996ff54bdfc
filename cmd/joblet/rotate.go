package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func renewCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs renew", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", filepath.Join(jobletHome(), "config", "joblet-config.yml"), "server config to renew")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	cfg, err := config.LoadServer(*path)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	st, desc, err := certs.OpenStore(ctx, cfg.Store, log)
	if err != nil {
		return err
	}
	res, err := certs.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: *path, Store: st, Force: true})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "🆕 Server Certificate: renewed from the CA in %s, serial %s, expires %s\n", desc, res.Serial, res.NotAfter.UTC().Format("2006-01-02"))
	if res.TrustChanged {
		fmt.Fprintf(stdout, "   trust bundle updated: %d CA(s)\n", len(res.Trust))
	}
	fmt.Fprintf(stdout, "   %s rewritten; a running server picks it up within a second (no restart)\n", *path)
	return nil
}

func rotateCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: rotate-ca needs a step: begin, promote, finish, abort or status", errUsage)
	}
	step := args[0]
	fs := flag.NewFlagSet("joblet certs rotate-ca "+step, flag.ContinueOnError)
	fs.SetOutput(stderr)
	sf := addStoreFlags(fs)
	home := fs.String("home", jobletHome(), "joblet home (embedded mode's local store)")
	keyType := fs.String("key-type", envOr("JOBLET_KEY_TYPE", string(pki.ECDSAP256)), "key type of the new CA")
	caLife := fs.String("ca-lifetime", "1095d", "lifetime of the new CA")
	asJSON := fs.Bool("json", false, "print the status as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return usageErr(err)
	}
	kt, err := pki.ParseKeyType(*keyType)
	if err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	life, err := parseLifetime("ca-lifetime", *caLife)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rs, err := sf.resolve(ctx, *home, log)
	if err != nil {
		return err
	}
	r := &certs.Rotation{Store: rs.Store, Prefix: *sf.prefix, KeyType: kt, CALifetime: life}
	steps := map[string]func(context.Context) (*certs.RotationStatus, error){
		"begin": r.Begin, "promote": r.Promote, "finish": r.Finish, "abort": r.Abort, "status": r.Status,
	}
	f, ok := steps[step]
	if !ok {
		return fmt.Errorf("%w: unknown rotate-ca step %q: use begin, promote, finish, abort or status", errUsage, step)
	}
	st, err := f(ctx)
	if err != nil {
		return fmt.Errorf("rotate-ca %s: %w", step, err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(stdout, "CA rotation (%s): phase %s\n", rs.Desc, st.Phase)
	fmt.Fprintf(stdout, "  current CA  serial %s, sha256 %s, expires %s\n", st.Current.Serial, st.Current.Fingerprint, st.Current.NotAfter.Format("2006-01-02"))
	if st.Pending != nil {
		fmt.Fprintf(stdout, "  pending CA  serial %s, sha256 %s, expires %s\n", st.Pending.Serial, st.Pending.Fingerprint, st.Pending.NotAfter.Format("2006-01-02"))
	}
	for _, t := range st.Trusted {
		fmt.Fprintf(stdout, "  trusted     serial %s, sha256 %s\n", t.Serial, t.Fingerprint)
	}
	for _, role := range pki.Roles {
		fmt.Fprintf(stdout, "  %-10s client certificate from the %s\n", role, map[bool]string{true: "current CA", false: st.Clients[string(role)]}[st.Clients[string(role)] == "current"])
	}
	fmt.Fprintf(stdout, "next: %s\n", st.NextStep)
	return nil
}
