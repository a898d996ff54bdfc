// Command rnx is the joblet client: it runs and inspects jobs on joblet
// nodes over mutual TLS, using an rnx-config.yml.
//
// Each verb is a cobra command in a file of its own; this file holds the
// root command, the flags every command shares, the lazily loaded config
// and the mapping from errors to exit codes: 0 success, 1 failure, 2 bad
// usage (and, for `job run --follow`, the job's own exit code).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/buildinfo"
	"github.com/ehsaniara/joblet/internal/clidoc"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/jobid"
	"github.com/ehsaniara/joblet/internal/login"
	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/internal/route"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// app is one invocation: the shared flags, the output streams, and the
// config, loaded only by the commands that need it.
type app struct {
	cfgPath, nodeName string
	timeout           time.Duration
	// nodes is the node list of the node directory (--nodes,
	// JOBLET_NODES); routeAttempts bounds a search through a balancer.
	nodes         string
	routeAttempts int
	out, errOut   io.Writer

	path string
	cfg  *config.Rnx

	// raw turns off the escaping of control characters in job output and
	// fields (term.go); terminal says whether a writer is a terminal.
	raw      bool
	terminal func(io.Writer) bool
}

// usageError is bad usage: exit 2 with the command's short usage.
type usageError struct {
	cmd *cobra.Command
	msg string
}

func (e *usageError) Error() string { return e.msg }

func usagef(cmd *cobra.Command, format string, a ...any) error {
	return &usageError{cmd: cmd, msg: fmt.Sprintf(format, a...)}
}

// exitError ends rnx with code after its message was printed (the exit
// code of a followed job, an interrupted follow).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func run(args []string, stdout, stderr io.Writer) int {
	a := &app{out: stdout, errOut: stderr, terminal: isTerminal}
	root := a.rootCmd()
	root.SetArgs(args)
	root.SetOut(stdout)
	root.SetErr(stderr)
	cmd, err := root.ExecuteC()
	return a.exitCode(cmd, err)
}

func (a *app) exitCode(cmd *cobra.Command, err error) int {
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		if ue.cmd != nil {
			cmd = ue.cmd
		}
		fmt.Fprintf(a.errOut, "rnx: %s\n", ue.msg)
		if cmd != nil {
			use := cmd.UseLine()
			if cmd.HasAvailableSubCommands() {
				use = cmd.CommandPath() + " COMMAND"
			}
			fmt.Fprintf(a.errOut, "Usage: %s\nRun '%s --help' for more.\n", use, cmd.CommandPath())
		}
		return 2
	default:
		fmt.Fprintln(a.errOut, "rnx: error:", err)
		return 1
	}
}

const rootLong = `rnx runs and inspects jobs on joblet nodes over mutual TLS.

Config: --config, else $RNX_CONFIG, ~/.rnx/rnx-config.yml,
/opt/joblet/config/rnx-config.yml (never the current directory's unless
named). Node: --node, else the one with isDefault, else "default".

Job commands reach a job's node from its ID (NODE_0123456789ab), through a
load balancer or directly when the node directory names it: the config's
entries of the selected node's fleet, and --nodes / JOBLET_NODES.

Exit codes: 0 success, 1 failure, 2 bad usage; "job run --follow" and
"job log -f" exit with the job's own exit code (128+N for a job killed by
signal N), and 130 when interrupted (the job keeps running).`

func (a *app) rootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "rnx",
		Short:         "Run and inspect jobs on joblet nodes",
		Long:          rootLong,
		Version:       buildinfo.String("rnx"),
		SilenceErrors: true,
		SilenceUsage:  true,
		Args:          cobra.ArbitraryArgs,
		RunE:          group("job, info, nodes, config, login, whoami, version, completion"),
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			if err := backend.CheckPrefixFlag(cmd.Flags()); err != nil {
				return usagef(cmd, "%v", err)
			}
			return nil
		},
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usagef(cmd, "%v%s", err, clidoc.FlagSuggestion(cmd.Flags(), err))
	})
	pf := root.PersistentFlags()
	pf.StringVar(&a.cfgPath, "config", "", "rnx config file (default: $RNX_CONFIG, then the search path above)")
	pf.StringVar(&a.nodeName, "node", "", "node to talk to, by its name in the config")
	pf.DurationVar(&a.timeout, "timeout", 30*time.Second, "deadline for one call (not for following output)")
	pf.StringVar(&a.nodes, "nodes", os.Getenv(nodedir.Env), "the node directory's list beside the config's entries: NODE_ID=HOST:PORT or HOST:PORT, comma-separated; job commands dial a job's node directly when it names it (env JOBLET_NODES)")
	pf.IntVar(&a.routeAttempts, "route-attempts", route.DefaultAttempts, "new connections a job command tries through a load balancer to reach the job's node")
	root.RegisterFlagCompletionFunc("node", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		if err := a.load(); err != nil {
			return nil, cobra.ShellCompDirectiveError
		}
		return a.cfg.NodeNames(), cobra.ShellCompDirectiveNoFileComp
	})
	root.AddCommand(a.jobCmd(), a.infoCmd(), a.nodesCmd(), a.configCmd(), a.loginCmd(), a.whoamiCmd(), a.versionCmd(), clidoc.ManCommand(buildinfo.String("rnx")))
	root.SetHelpFunc(helpWithUsedFlags(root.HelpFunc()))
	return root
}

// group is the RunE of a command that only holds subcommands: without one
// it is bad usage, and a mistyped one gets cobra's suggestions.
func group(subs string) func(*cobra.Command, []string) error {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usagef(cmd, "%s needs a command: %s", cmd.CommandPath(), subs)
		}
		msg := fmt.Sprintf("unknown command %q for %q", args[0], cmd.CommandPath())
		cmd.SuggestionsMinimumDistance = 2
		if s := cmd.SuggestionsFor(args[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, " or ") + "?"
		}
		return usagef(cmd, "%s", msg)
	}
}

// noArgs and exactArgs check positional arguments as bad usage.
func noArgs(cmd *cobra.Command, args []string) error {
	if len(args) > 0 {
		return usagef(cmd, "%s takes no arguments, got %q", verb(cmd), args)
	}
	return nil
}

func oneID(cmd *cobra.Command, args []string) error {
	if len(args) != 1 {
		return usagef(cmd, "%s needs exactly one job ID, got %d arguments", verb(cmd), len(args))
	}
	if _, ok := jobid.Node(args[0]); !ok {
		return usagef(cmd, "%q is not a job ID: IDs are NODE_ then 12 hex digits, as `rnx job run` prints them", args[0])
	}
	return nil
}

// verb is a command's path without "rnx", as errors name it.
func verb(cmd *cobra.Command) string {
	return strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()+" ")
}

// load finds and reads the rnx config, once, with the certificate of
// `rnx login` beside it in place of the config's own.
func (a *app) load() error {
	if a.cfg != nil {
		return nil
	}
	if err := a.loadRaw(); err != nil {
		return err
	}
	warn, err := login.Apply(a.cfg, a.path, time.Now())
	if err != nil {
		a.cfg = nil
		return err
	}
	if warn != "" {
		fmt.Fprintln(a.errOut, "rnx: warning:", warn)
	}
	return nil
}

// loadRaw reads the rnx config as written (rnx login and whoami).
func (a *app) loadRaw() error {
	if a.cfg != nil {
		return nil
	}
	path, err := config.FindRnx(a.cfgPath)
	if err != nil {
		return err
	}
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return err
	}
	if w := config.ExposedKeyWarning(path); w != "" {
		fmt.Fprintln(a.errOut, "rnx: warning:", w)
	}
	a.path, a.cfg = path, cfg
	return nil
}

// dial connects to the selected node.
func (a *app) dial() (*client.Conn, error) { return a.dialWith(client.DialLearning) }

// dialWith connects to the selected node with how (a dial of package
// client), keeping the CRL current from what the node hands back.
func (a *app) dialWith(how func(string, *config.Node, client.Learn) (*client.Conn, error)) (*client.Conn, error) {
	if err := a.load(); err != nil {
		return nil, err
	}
	name, node, err := a.cfg.Select(a.nodeName)
	if err != nil {
		return nil, err
	}
	var conn *client.Conn
	conn, err = how(name, node, a.learnCRL(&conn, name))
	if err != nil {
		return nil, err
	}
	return conn, nil
}

// callCtx is the context of one call: bounded by --timeout, ended early by
// SIGINT or SIGTERM.
func (a *app) callCtx() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	return ctx, func() { cancel(); stop() }
}

// onNode runs one read against the selected node, within the per-call
// deadline; the connection is closed after it. A read that lost its
// connection, or found nothing listening, is made again on a new one
// (client.Retry: through a balancer, most likely another node). Only reads
// come here: a job start is never retried.
func (a *app) onNode(call func(ctx context.Context, conn *client.Conn) error) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	return client.Retry(ctx, client.ReadAttempts, a.dial, func(conn *client.Conn) error { return call(ctx, conn) })
}

// printJSON writes v as indented JSON.
func (a *app) printJSON(v any) error {
	return writeJSON(a.out, v)
}
