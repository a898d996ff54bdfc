package main

import (
	"context"
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

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/logbatch"
	// The mechanism jobs run in: it registers itself with the job runner,
	// and its init is the sandbox's re-exec hook, so this binary must link it.
	_ "github.com/ehsaniara/joblet/internal/sandbox"
	"github.com/ehsaniara/joblet/internal/server"
)

func (c *cli) serverCmd() *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "server [--config PATH]",
		Short: "serve jobs over mutual TLS; SIGHUP reloads the config and refreshes from the store",
		Args:  noArgs,
		RunE:  func(*cobra.Command, []string) error { return serve(path, c.log, c.stderr) },
	}
	cmd.Flags().StringVar(&path, "config", filepath.Join(config.Home(), "config", "joblet-config.yml"), "server config file (default under $JOBLET_HOME)")
	return cmd
}

// serve runs the node; log writes to logOut, where the audit lines go too.
func serve(path string, log *slog.Logger, logOut io.Writer) error {
	cfg, err := loadServerConfig(path, log)
	if err != nil {
		return err
	}
	// The audit lines (one per call) go out in batches, within 20 ms, to
	// the log's destination; everything else the node logs is written at
	// once. The last batch is written at shutdown.
	auditOut := logbatch.New(logOut, 20*time.Millisecond)
	defer auditOut.Close()
	audit := slog.New(slog.NewTextHandler(auditOut, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv, err := server.New(cfg, server.Options{ConfigPath: path, Refresh: storeRefresher(path, cfg, log), AuditLog: audit}, log)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
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
	var fl *certs.Fleet
	var opened config.StoreRef     // what fl was opened from
	cache := &certs.RefreshCache{} // a refresh at rest: one store call
	return func(ctx context.Context) (bool, error) {
		ctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		// One read of the config gives the refresh both its store and its
		// prefix: a config that now names another store (a re-bootstrap
		// with --move-node) is refreshed from that store, not the old one.
		cfg, raw, err := config.ReadServer(path)
		if err != nil {
			return false, err
		}
		if fl == nil || cfg.Store != opened {
			f, err := nodeFleet(ctx, cfg, log)
			if err != nil {
				return false, err
			}
			fl, opened = f, cfg.Store
		}
		res, err := fl.RefreshNode(ctx, certs.NodeRefresh{ConfigPath: path, Cache: cache, Config: cfg, Raw: raw})
		if err != nil {
			return false, err
		}
		if res.Renewed {
			log.Info("server certificate renewed", "reason", res.Reason, "serial", res.Serial, "notAfter", res.NotAfter)
		}
		if res.TrustChanged {
			log.Info("trust bundle changed", "trustedCAs", res.Trust)
		}
		if res.ChainChanged {
			log.Info("certificate chain changed (a CA rotation's cross certificate added or dropped)", "serial", res.Serial)
		}
		if res.CRLProblem != "" {
			// Loud: someone deleted or rolled back the fleet's CRL, or it
			// cannot be verified; this node keeps enforcing the one it has.
			log.Error("the store's CRL was not taken", "problem", res.CRLProblem)
		}
		if res.RenewProblem != "" {
			// Loud: the store's CA or node-issuing CA is unusable (a write
			// without the root key, or a step interrupted).
			log.Error("the server certificate cannot be renewed from the store", "problem", res.RenewProblem)
		}
		if res.TrustProblem != "" {
			// Loud: someone wrote garbage where the fleet's trust is kept.
			log.Error("the store's trust bundle was not taken", "problem", res.TrustProblem)
		}
		return res.Renewed || res.TrustChanged || res.ChainChanged, nil
	}
}

// loadServerConfig reads a server config: refused when others can write it
// or its directories, warned about when others can read it.
func loadServerConfig(path string, log *slog.Logger) (*config.Server, error) {
	if err := config.CheckServerConfig(path); err != nil {
		return nil, err
	}
	cfg, err := config.LoadServer(path)
	if err != nil {
		return nil, err
	}
	if err := config.CheckStore(cfg.Store); err != nil {
		return nil, err
	}
	if w := config.ExposedKeyWarning(path); w != "" {
		log.Warn(w)
	}
	return cfg, nil
}
