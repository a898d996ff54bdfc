// Command rnx is the joblet client: it runs and inspects jobs on joblet
// nodes over mutual TLS, using an rnx-config.yml.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/backend"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

const usage = `rnx: run and inspect jobs on joblet nodes.

Usage:
  rnx [--config PATH] [--node NAME] job run [--follow] CMD [ARGS...]
                                                           start a job, print its id
                                                           (--follow: stream its output instead)
  rnx [...] job list                                       list jobs
  rnx [...] job status ID                                  show one job
  rnx [...] job log ID [--follow]                          print a job's output
  rnx [...] job stop ID                                    stop a job
  rnx [...] info                                           show the node's identity and certificate
  rnx [...] nodes                                          list the nodes in the config
  rnx [...] config refresh [--role R] [--prefix P] [--store dir:PATH] [--region R]
                                                           re-fetch client certificates and the trust
                                                           bundle from the store (needs read access;
                                                           USE_SECRETS_MANAGER as for joblet)

Config: --config, else $RNX_CONFIG, ./rnx-config.yml, ~/.rnx/rnx-config.yml,
/opt/joblet/config/rnx-config.yml. Node: --node, else the one with isDefault,
else "default". Exit codes: 0 success, 1 failure, 2 bad usage.
`

var errUsage = errors.New("usage")

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rnx", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, usage) }
	cfgPath := fs.String("config", "", "rnx config file")
	nodeName := fs.String("node", "", "node to talk to")
	timeout := fs.Duration("timeout", 30*time.Second, "deadline for one call (not for log --follow)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	err := dispatch(fs.Args(), *cfgPath, *nodeName, *timeout, stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "rnx: %v\n\n%s", err, usage)
		return 2
	default:
		fmt.Fprintln(stderr, "rnx: error:", err)
		return 1
	}
}

func dispatch(args []string, cfgPath, nodeName string, timeout time.Duration, out, errOut io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: no command", errUsage)
	}
	path, err := config.FindRnx(cfgPath)
	if err != nil {
		return err
	}
	cfg, err := config.LoadRnx(path)
	if err != nil {
		return err
	}
	if w := config.ExposedKeyWarning(path); w != "" {
		fmt.Fprintln(errOut, "rnx: warning:", w)
	}
	if args[0] == "nodes" {
		return listNodes(cfg, out)
	}
	if args[0] == "config" {
		return configCmd(args[1:], path, out)
	}
	name, node, err := cfg.Select(nodeName)
	if err != nil {
		return err
	}
	conn, err := client.Dial(name, node)
	if err != nil {
		return err
	}
	defer conn.Close()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	follow := args[0] == "job" && len(args) > 2 && (args[1] == "log" && hasFlag(args[2:], "follow") ||
		args[1] == "run" && (args[2] == "--follow" || args[2] == "-f"))
	if !follow {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}

	switch args[0] {
	case "info":
		info, err := conn.Info(ctx)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "node:      %s\naddress:   %s\nnode id:   %s\nversion:   %s\nrole:      %s\nserver certificate serial %s, expires %s\n",
			name, conn.Address, info.NodeId, info.Version, info.CallerRole, info.ServerCertSerial,
			time.Unix(info.ServerCertNotAfterUnix, 0).UTC().Format(time.RFC3339))
		return nil
	case "job":
		return jobCmd(ctx, conn, args[1:], out)
	}
	return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
}

func hasFlag(args []string, name string) bool {
	for _, a := range args {
		if a == "-"+name || a == "--"+name {
			return true
		}
	}
	return false
}

// positional drops flags from args.
func positional(args []string) []string {
	var out []string
	for _, a := range args {
		if !strings.HasPrefix(a, "-") {
			out = append(out, a)
		}
	}
	return out
}

func jobCmd(ctx context.Context, c *client.Conn, args []string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("%w: job needs a subcommand: run, list, status, log, stop", errUsage)
	}
	sub, rest := args[0], args[1:]
	needID := func() (string, error) {
		p := positional(rest)
		if len(p) != 1 {
			return "", fmt.Errorf("%w: job %s needs exactly one job id", errUsage, sub)
		}
		return p[0], nil
	}
	switch sub {
	case "run":
		// --follow before the command streams the output on the same
		// connection, so through a load balancer it reaches the node that
		// runs the job.
		follow := len(rest) > 0 && (rest[0] == "--follow" || rest[0] == "-f")
		if follow {
			rest = rest[1:]
		}
		if len(rest) == 0 {
			return fmt.Errorf("%w: job run needs a command", errUsage)
		}
		j, err := c.Jobs.RunJob(ctx, &pb.RunJobRequest{Command: rest[0], Args: rest[1:]})
		if err != nil {
			return c.Explain(err)
		}
		if !follow {
			fmt.Fprintln(out, j.Id)
			return nil
		}
		return streamLogs(ctx, c, j.Id, out)
	case "list":
		r, err := c.Jobs.ListJobs(ctx, &pb.ListJobsRequest{})
		if err != nil {
			return c.Explain(err)
		}
		tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tSTATUS\tEXIT\tSTARTED\tBY\tCOMMAND")
		for _, j := range r.Jobs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", j.Id, j.Status, exitText(j), time.Unix(0, j.StartedUnixNano).UTC().Format(time.RFC3339), j.StartedBy, strings.Join(append([]string{j.Command}, j.Args...), " "))
		}
		return tw.Flush()
	case "status", "stop":
		id, err := needID()
		if err != nil {
			return err
		}
		var j *pb.Job
		if sub == "status" {
			j, err = c.Jobs.GetJobStatus(ctx, &pb.GetJobStatusRequest{Id: id})
		} else {
			j, err = c.Jobs.StopJob(ctx, &pb.StopJobRequest{Id: id})
		}
		if err != nil {
			return c.Explain(err)
		}
		fmt.Fprintf(out, "id:       %s\nstatus:   %s\nexit:     %s\ncommand:  %s\nstarted:  %s\n", j.Id, j.Status, exitText(j),
			strings.Join(append([]string{j.Command}, j.Args...), " "), time.Unix(0, j.StartedUnixNano).UTC().Format(time.RFC3339Nano))
		if j.EndedUnixNano != 0 {
			fmt.Fprintf(out, "ended:    %s\n", time.Unix(0, j.EndedUnixNano).UTC().Format(time.RFC3339Nano))
		}
		return nil
	case "log":
		id, err := needID()
		if err != nil {
			return err
		}
		return printLogs(ctx, c, id, hasFlag(rest, "follow"), out)
	}
	return fmt.Errorf("%w: unknown job subcommand %q", errUsage, sub)
}

func printLogs(ctx context.Context, c *client.Conn, id string, follow bool, out io.Writer) error {
	s, err := c.Jobs.GetJobLogs(ctx, &pb.GetJobLogsRequest{Id: id, Follow: follow})
	if err != nil {
		return c.Explain(err)
	}
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.Explain(err)
		}
		if _, err := out.Write(chunk.Data); err != nil {
			return err
		}
	}
}

// streamLogs follows a job it just started and fails when the job failed,
// so `rnx job run --follow` can be used in scripts.
func streamLogs(ctx context.Context, c *client.Conn, id string, out io.Writer) error {
	if err := printLogs(ctx, c, id, true, out); err != nil {
		return err
	}
	j, err := c.Jobs.GetJobStatus(ctx, &pb.GetJobStatusRequest{Id: id})
	if err != nil {
		return c.Explain(err)
	}
	if j.Status != "COMPLETED" {
		return fmt.Errorf("job %s %s with exit code %d", id, strings.ToLower(j.Status), j.ExitCode)
	}
	return nil
}

func exitText(j *pb.Job) string {
	if j.EndedUnixNano == 0 {
		return "-"
	}
	return fmt.Sprint(j.ExitCode)
}

func listNodes(cfg *config.Rnx, out io.Writer) error {
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tDEFAULT")
	for _, n := range cfg.NodeNames() {
		d := ""
		if cfg.Nodes[n].IsDefault {
			d = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", n, cfg.Nodes[n].Address, d)
	}
	return tw.Flush()
}

func configCmd(args []string, path string, out io.Writer) error {
	if len(args) == 0 || args[0] != "refresh" {
		return fmt.Errorf("%w: config needs a subcommand: refresh", errUsage)
	}
	fs := flag.NewFlagSet("rnx config refresh", flag.ContinueOnError)
	role := fs.String("role", "", "refresh only the nodes of this role")
	prefix := fs.String("prefix", envOr("SECRETS_PREFIX", "joblet"), "secret name prefix (env SECRETS_PREFIX)")
	storeSpec := fs.String("store", os.Getenv("JOBLET_STORE"), "a directory store: dir:PATH (env JOBLET_STORE)")
	region := fs.String("region", envOr("EC2_REGION", os.Getenv("AWS_REGION")), "AWS region (env EC2_REGION, AWS_REGION)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	var only pki.Role
	if *role != "" {
		r, err := pki.ParseRole(*role)
		if err != nil {
			return fmt.Errorf("%w: %v", errUsage, err)
		}
		only = r
	}
	if err := secretstore.ValidatePrefix(*prefix); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	home := envOr("JOBLET_HOME", "/opt/joblet")
	rs, err := backend.ResolveStore(ctx, backend.StoreRequest{UseSecretsManager: envOr("USE_SECRETS_MANAGER", "auto"),
		StoreSpec: *storeSpec, Region: *region, Home: home})
	if err != nil {
		return err
	}
	cr, err := (&certs.Fleet{Store: rs.Store, StoreDesc: rs.Desc, Prefix: *prefix}).RefreshClientConfig(ctx, path, only)
	if err != nil {
		return err
	}
	for _, p := range cr.Problems {
		fmt.Fprintln(os.Stderr, "rnx: warning:", p)
	}
	fmt.Fprintf(out, "refreshed %s from %s: nodes %s\n", path, rs.Desc, strings.Join(cr.Updated, ", "))
	return nil
}

func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}
