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
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/server"
)

const usage = `joblet: a job execution node driven by rnx over mutual TLS.

Usage:
  joblet server [--config PATH]       serve (default config: $JOBLET_HOME/config/joblet-config.yml)
  joblet certs bootstrap [flags]      create or fetch certificates and write the configs
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
		default:
			err = fmt.Errorf("%w: unknown command `joblet certs %s`", errUsage, args[1])
		}
	case "version":
		fmt.Fprintln(stdout, server.Version)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
	default:
		err = fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
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
	cfg, err := config.LoadServer(*path)
	if err != nil {
		return err
	}
	srv, err := server.New(cfg, log)
	if err != nil {
		return fmt.Errorf("%s: %w", *path, err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
		log.Info("shutting down")
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return nil
	}
}

func usageErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return err
	}
	return fmt.Errorf("%w: %v", errUsage, err)
}
