package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/backend/kms"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

func renewCmd(args []string, stdout, stderr io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet certs renew", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", filepath.Join(jobletHome(), "config", "joblet-config.yml"), "server config to renew")
	timeout := fs.Duration("timeout", 2*time.Minute, "the longest the command may take, retries included")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	cfg, err := loadServerConfig(*path, log)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	st, desc, err := backend.OpenStore(ctx, cfg.Store, log)
	if err != nil {
		return err
	}
	res, err := (&certs.Fleet{Store: st, StoreDesc: desc, OpenKMS: kms.OpenerFor(cfg.Store), Log: log}).RefreshNode(ctx, certs.NodeRefresh{ConfigPath: *path, Force: true})
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
	probe := fs.String("nodes", "", "status: comma list of node addresses (HOST:PORT) to ask which CA signed the certificate they serve")
	probeCfg := fs.String("rnx-config", filepath.Join(jobletHome(), "config", "rnx-config.yml"), "status: the operator rnx config used to ask the nodes")
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
	ctx, cancel := sf.context()
	defer cancel()
	rs, err := sf.resolve(ctx, *home, log)
	if err != nil {
		return err
	}
	fl := &certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: *sf.prefix, KeyType: kt, CALifetime: life, OpenKMS: kms.OpenerFor(rs.Ref), Log: log}
	steps := map[string]func(context.Context) (*certs.RotationStatus, error){
		"begin":   func(ctx context.Context) (*certs.RotationStatus, error) { return fl.BeginRotation(ctx, *sf.caKMS) },
		"promote": fl.PromoteRotation, "finish": fl.FinishRotation, "abort": fl.AbortRotation, "status": fl.RotationStatus,
	}
	f, ok := steps[step]
	if !ok {
		return fmt.Errorf("%w: unknown rotate-ca step %q: use begin, promote, finish, abort or status", errUsage, step)
	}
	st, err := f(ctx)
	if err != nil {
		return fmt.Errorf("rotate-ca %s: %w", step, err)
	}
	if *probe != "" {
		if st.Nodes, err = probeNodes(ctx, *probeCfg, pki.SplitList(*probe), st); err != nil {
			return err
		}
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(st)
	}
	fmt.Fprintf(stdout, "CA rotation (%s): phase %s\n", rs.Desc, st.Phase)
	fmt.Fprintf(stdout, "  current CA  serial %s, sha256 %s, expires %s, key: %s\n", st.Current.Serial, st.Current.Fingerprint, st.Current.NotAfter.Format("2006-01-02"), st.CurrentKey)
	if st.Pending != nil {
		fmt.Fprintf(stdout, "  pending CA  serial %s, sha256 %s, expires %s, key: %s\n", st.Pending.Serial, st.Pending.Fingerprint, st.Pending.NotAfter.Format("2006-01-02"), st.PendingKey)
	}
	for _, t := range st.Trusted {
		fmt.Fprintf(stdout, "  trusted     serial %s, sha256 %s\n", t.Serial, t.Fingerprint)
	}
	for _, role := range pki.Roles {
		fmt.Fprintf(stdout, "  %-10s client certificate from the %s\n", role, map[bool]string{true: "current CA", false: st.Clients[string(role)]}[st.Clients[string(role)] == "current"])
	}
	for _, n := range st.Nodes {
		fmt.Fprintf(stdout, "  node %-22s %s\n", n.Address, n.Summary)
	}
	fmt.Fprintf(stdout, "next: %s\n", st.NextStep)
	return nil
}

// probeNodes asks each node (directly, with the operator config's default
// credentials) for its id and the CA that signed the certificate it serves.
func probeNodes(ctx context.Context, cfgPath string, addrs []string, st *certs.RotationStatus) ([]certs.NodeReport, error) {
	cfg, err := config.LoadRnx(cfgPath)
	if err != nil {
		return nil, fmt.Errorf("--nodes needs an operator rnx config: %w", err)
	}
	_, base, err := cfg.Select("")
	if err != nil {
		return nil, err
	}
	var out []certs.NodeReport
	for _, a := range addrs {
		n := *base
		n.Address = strings.TrimSpace(a)
		rep := certs.NodeReport{Address: n.Address}
		conn, err := client.Dial(n.Address, &n)
		if err == nil {
			var info *pb.NodeInfo
			info, err = conn.Info(ctx)
			conn.Close()
			if err == nil {
				rep.NodeID, rep.IssuerSHA256 = info.NodeId, info.ServerCertIssuerSha256
			}
		}
		switch {
		case err != nil:
			rep.Summary = "unreachable: " + err.Error()
		case rep.IssuerSHA256 == st.Current.Fingerprint:
			rep.Current, rep.Summary = true, rep.NodeID+": serves a certificate from the current CA"
		default:
			rep.Summary = rep.NodeID + ": still serves a certificate from another CA (" + rep.IssuerSHA256 + ")"
		}
		out = append(out, rep)
	}
	return out, nil
}
