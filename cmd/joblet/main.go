// Command joblet is a joblet node: `joblet server` serves jobs over mutual
// TLS, `joblet certs ...` manages the certificates it serves with.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/backend/kms"
	"github.com/ehsaniara/joblet/internal/buildinfo"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore"
	"github.com/ehsaniara/joblet/internal/server"
)

const usage = `joblet: a job execution node driven by rnx over mutual TLS.

Usage:
  joblet server [--config PATH]       serve (default config: $JOBLET_HOME/config/joblet-config.yml);
                                      SIGHUP reloads the config and refreshes from the store
  joblet certs bootstrap [flags]      create or fetch certificates and write the configs
  joblet certs status [--json] [--warn-days N]
                                      the CA, role and server certificates, sync with the store;
                                      exit 0 all good, 1 expiring within N days or out of sync,
                                      2 expired, broken or store unreachable
  joblet certs iam-policy --for bootstrap|node|rotation|client-<role>
                                      a least-privilege IAM policy for that flow
  joblet certs import --from-home DIR | --ca-cert F --ca-key F [--client ROLE=CERT,KEY]... [--force]
                                      seed a shared store from an existing CA, keeping it
  joblet certs export [bootstrap flags] [--replace]
                                      write an embedded install from a shared store (off AWS)
  joblet certs replicate --replica-regions r1,r2
                                      replicate the existing shared secrets (disaster recovery)
  joblet certs revoke --serial S | --cert FILE [--reason R]
                                      add a certificate to the fleet's CRL (<prefix>/crl)
  joblet certs reissue --role ROLE [--revoke]
                                      give one role a new key and client certificate
                                      from the current CA (no CA rotation)
  joblet certs renew [--config PATH]  re-issue this node's server certificate from the shared CA
  joblet certs rotate-ca begin|promote|finish|abort|status [--json]
                                      staged CA rotation without downtime (docs/ROTATION.md)
  joblet version

Run 'joblet certs bootstrap -h' for its flags.
Exit codes: 0 success, 1 failure, 2 bad usage.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks errors in how the command was called (exit code 2).
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "server":
		err = serverCmd(args[1:], log)
	case "certs":
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		switch args[1] {
		case "bootstrap":
			err = bootstrapCmd(args[2:], stdout, stderr, log)
		case "status":
			err = statusCmd(args[2:], stdout, stderr, log)
		case "import":
			err = importCmd(args[2:], stdout, stderr, log)
		case "export":
			err = exportCmd(args[2:], stdout, stderr, log)
		case "revoke":
			err = revokeCmd(args[2:], stdout, stderr, log)
		case "reissue":
			err = reissueCmd(args[2:], stdout, stderr, log)
		case "replicate":
			err = replicateCmd(args[2:], stdout, stderr, log)
		case "iam-policy":
			err = iamPolicyCmd(args[2:], stdout, stderr)
		case "renew":
			err = renewCmd(args[2:], stdout, stderr, log)
		case "rotate-ca":
			err = rotateCmd(args[2:], stdout, stderr, log)
		default:
			err = fmt.Errorf("%w: unknown command `joblet certs %s`", errUsage, args[1])
		}
	case "version":
		fmt.Fprintln(stdout, buildinfo.String("joblet"))
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	var code exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &code):
		return int(code)
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage), errors.Is(err, certs.ErrUsage):
		fmt.Fprintln(stderr, "joblet:", err)
		return 2
	default:
		fmt.Fprintln(stderr, "joblet: error:", err)
		return 1
	}
}

func jobletHome() string {
	if h := os.Getenv("JOBLET_HOME"); h != "" {
		return h
	}
	return "/opt/joblet"
}

func serverCmd(args []string, log *slog.Logger) error {
	fs := flag.NewFlagSet("joblet server", flag.ContinueOnError)
	path := fs.String("config", filepath.Join(jobletHome(), "config", "joblet-config.yml"), "server config file")
	if err := fs.Parse(args); err != nil {
		return usageErr(err)
	}
	cfg, err := loadServerConfig(*path, log)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, server.Options{ConfigPath: *path, Refresh: storeRefresher(*path, cfg, log)}, log)
	if err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	srv.Run(ctx)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	errc := make(chan error, 2)
	go func() { errc <- srv.ListenAndServe() }()
	if addr := cfg.Metrics.Address; addr != "" {
		ml, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("metrics.address %s: %w", addr, err)
		}
		log.Info("metrics and health", "address", ml.Addr().String(), "paths", "/metrics /healthz")
		hs := &http.Server{Handler: srv.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { errc <- hs.Serve(ml) }()
		defer hs.Close()
	}
	for {
		select {
		case err := <-errc:
			return err
		case <-hup:
			log.Info("SIGHUP: reloading")
			if err := srv.Reload(); err != nil {
				log.Error("reload", "err", err)
			}
			srv.RefreshNow()
		case <-ctx.Done():
			log.Info("shutting down")
			sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			srv.Shutdown(sctx)
			return nil
		}
	}
}

// storeRefresher refreshes the node from the store its config names; nil
// for a config without one (written before stores were recorded).
func storeRefresher(path string, cfg *config.Server, log *slog.Logger) func(context.Context) (bool, error) {
	if cfg.Store.Kind == "" {
		log.Warn("the server config names no store: no automatic renewal; re-run `joblet certs bootstrap` to add it")
		return nil
	}
	var st secretstore.Store
	return func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if st == nil {
			s, _, err := backend.OpenStore(ctx, cfg.Store, log)
			if err != nil {
				return false, err
			}
			st = s
		}
		res, err := (&certs.Fleet{Store: st, OpenKMS: kms.OpenerFor(cfg.Store), Log: log}).RefreshNode(ctx, certs.NodeRefresh{ConfigPath: path})
		if err != nil {
			return false, err
		}
		if res.Renewed {
			log.Info("server certificate renewed", "reason", res.Reason, "serial", res.Serial, "notAfter", res.NotAfter)
		}
		if res.TrustChanged {
			log.Info("trust bundle changed", "trustedCAs", res.Trust)
		}
		return res.Renewed || res.TrustChanged, nil
	}
}

// loadServerConfig reads a server config and warns when others can read it.
func loadServerConfig(path string, log *slog.Logger) (*config.Server, error) {
	cfg, err := config.LoadServer(path)
	if err != nil {
		return nil, err
	}
	if w := config.ExposedKeyWarning(path); w != "" {
		log.Warn(w)
	}
	return cfg, nil
}

func usageErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %v", errUsage, err)
}
