// Command joblet is a joblet node: `joblet server` serves jobs over mutual
// TLS, `joblet certs ...` manages the certificates it serves with.
//
// This package is a thin adapter: flags → options → a library call → print.
// One file per verb; main.go holds the root command and the exit codes.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/buildinfo"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/clidoc"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// Exit codes (documented in README.md and docs/OPERATIONS.md).
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// exitCode ends the command with a code and no message of its own
// (`certs status` uses it for its 0/1/2 monitoring codes).
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit %d", int(e)) }

// usageError is a mistake in how the command was called (exit 2). syntax
// marks a command-line mistake (unknown flag, extra argument): those print
// the command's usage line after the message.
type usageError struct {
	msg    string
	syntax bool
}

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...)}
}

// cli carries what every command writes to.
type cli struct {
	stdout, stderr io.Writer
	log            *slog.Logger
}

func run(args []string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr,
		log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	root := c.newRoot()
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	return c.exit(cmd, err)
}

// exit maps an error to the exit code and prints it.
func (c *cli) exit(cmd *cobra.Command, err error) int {
	var code exitCode
	var ue *usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &code):
		return int(code)
	case errors.As(err, &ue):
		fmt.Fprintln(c.stderr, "joblet:", err)
		if ue.syntax && cmd != nil {
			line := cmd.UseLine()
			if cmd.HasAvailableSubCommands() {
				line = cmd.CommandPath() + " <command>"
			}
			fmt.Fprintf(c.stderr, "Usage: %s\nRun '%s --help' for more.\n", line, cmd.CommandPath())
		}
		return exitUsage
	case errors.Is(err, certs.ErrUsage):
		fmt.Fprintln(c.stderr, "joblet:", err)
		return exitUsage
	default:
		fmt.Fprintln(c.stderr, "joblet: error:", err)
		return exitFailure
	}
}

func (c *cli) newRoot() *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   "joblet",
		Short: "a job execution node driven by rnx over mutual TLS",
		Long: `joblet: a job execution node driven by rnx over mutual TLS.

Flags default from environment variables (named in each flag's help); a flag
given on the command line overrides its variable.

Exit codes: 0 success, 1 failure, 2 bad usage; ` + "`certs status`" + ` exits 0 all good,
1 expiring soon or out of sync, 2 expired, broken or store unreachable.`,
		Args:          subcommandArgs,
		SilenceErrors: true,
		SilenceUsage:  true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := backend.CheckPrefixFlag(cmd.Flags()); err != nil {
				return usagef("%v", err)
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, _ []string) error {
			if showVersion {
				fmt.Fprintln(c.stdout, buildinfo.String("joblet"))
				return nil
			}
			return needSubcommand(cmd)
		},
	}
	root.Flags().BoolVar(&showVersion, "version", false, "print the version and exit")
	root.AddCommand(c.serverCmd(), c.certsCmd(), c.issuerCmd(), c.versionCmd(), clidoc.ManCommand(buildinfo.String("joblet")))
	// The completion command takes its writer when it is made: stdout.
	root.SetOut(c.stdout)
	root.InitDefaultCompletionCmd()
	for _, sub := range root.Commands() {
		if sub.Name() == "completion" {
			sub.Args = subcommandArgs
			sub.RunE = func(cmd *cobra.Command, _ []string) error { return needSubcommand(cmd) }
			for _, sh := range sub.Commands() {
				sh.Args = noArgs
			}
		}
	}
	// cobra's own notices (deprecated flags) go to stderr; help goes to
	// stdout.
	root.SetOut(c.stderr)
	root.SetErr(c.stderr)
	defHelp := root.HelpFunc()
	root.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		cmd.SetOut(c.stdout)
		defer func() {
			if cmd.HasParent() {
				cmd.SetOut(nil)
			} else {
				cmd.SetOut(c.stderr)
			}
		}()
		defHelp(cmd, args)
	})
	root.SetFlagErrorFunc(flagError)
	return root
}

// subcommandArgs refuses an unknown subcommand, suggesting near names.
func subcommandArgs(cmd *cobra.Command, args []string) error {
	if len(args) == 0 {
		return nil
	}
	msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
	if cmd.SuggestionsMinimumDistance <= 0 {
		cmd.SuggestionsMinimumDistance = 2
	}
	if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
		msg += "; did you mean " + strings.Join(s, " or ") + "?"
	}
	return &usageError{msg: msg, syntax: true}
}

// needSubcommand is the run of a command that only groups others.
func needSubcommand(cmd *cobra.Command) error {
	var names []string
	for _, s := range cmd.Commands() {
		if s.IsAvailableCommand() {
			names = append(names, s.Name())
		}
	}
	return &usageError{msg: fmt.Sprintf("%s needs a command: %s", cmd.CommandPath(), strings.Join(names, ", ")), syntax: true}
}

// noArgs refuses positional arguments.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return &usageError{msg: fmt.Sprintf("%s takes no arguments, got %q", cmd.CommandPath(), args[0]), syntax: true}
	}
	return nil
}

// flagError turns a flag parse error into a usage error, suggesting the
// nearest flags for an unknown one.
func flagError(cmd *cobra.Command, err error) error {
	return &usageError{msg: err.Error() + clidoc.FlagSuggestion(cmd.Flags(), err), syntax: true}
}
