package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
	"github.com/ehsaniara/joblet/internal/jobid"
)

func (a *app) jobRunCmd() *cobra.Command {
	var follow, asJSON bool
	var opts runOptions
	c := &cobra.Command{
		Use:   "run [flags] [--] COMMAND [ARG...]",
		Short: "Start a job and print its id, or follow its output",
		Long: `Start COMMAND with ARGs on the node and print the job's id.

Flags go before COMMAND; COMMAND and everything after it are passed to the
job as given ("--" may end rnx's flags explicitly).

With --follow the job's id goes to stderr, its output is streamed (stdout to
stdout, stderr to stderr), and rnx exits with the job's exit code: 128+N for
a job killed by signal N, 1 for one stopped without a code of its own.
Ctrl-C stops following, not the job (exit 130).

The job's environment is only what --env gives plus PATH, HOME and LANG.
--max-memory, --max-cpu, --max-procs and --max-disk set its limits; without them it gets
the node's defaults, and above the node's ceilings it is refused (rnx info
shows both).`,
		Example: `  rnx job run sh -c 'echo hi'
  rnx job run --follow -- sh -c 'exit 3'; echo $?   # 3
  rnx job run --json sleep 60
  rnx job run --max-memory 512M --max-cpu 50 --max-procs 100 --max-disk 1G --env MODE=fast -- python3 train.py`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usagef(cmd, "job run needs a command")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if follow && asJSON {
				return usagef(cmd, "--json and --follow cannot be combined: --json prints the job's id, --follow its output")
			}
			req, err := opts.request(cmd, args)
			if err != nil {
				return err
			}
			// Pinned: following after a lost connection must not
			// resume through the balancer on another node.
			conn, err := a.dialPinned()
			if err != nil {
				return err
			}
			defer conn.Close()
			var in *interrupts
			if follow {
				// From here on Ctrl-C ends the following, not rnx.
				in = catchInterrupts()
				defer in.stop()
			}
			ctx, cancel := a.callCtx()
			j, err := conn.Jobs.RunJob(ctx, req)
			cancel()
			if code := commandExitCode(err); code != 0 {
				// Like a shell: 127 no such command, 126 not executable.
				fmt.Fprintln(a.errOut, "rnx: error:", conn.Explain(err))
				return &exitError{code: code}
			}
			if err != nil {
				return conn.Explain(err)
			}
			node, _ := jobid.Node(j.Id)
			switch {
			case asJSON:
				return a.printJSON(struct {
					ID   string `json:"id"`
					Node string `json:"node,omitempty"` // the node running it, as its ID names it
				}{j.Id, node})
			case !follow:
				if node != "" {
					fmt.Fprintf(a.errOut, "job %s started on node %s\n", j.Id, node)
				}
				_, err := fmt.Fprintln(a.out, j.Id)
				return err
			}
			// Following on the same connection reaches, through a load
			// balancer, the node that runs the job.
			fmt.Fprintf(a.errOut, "job %s started%s; follow again with: %s\n", j.Id, onNodeText(node), a.resumeCommand(j.Id))
			if err := a.follow(conn, j.Id, in); err != nil {
				return err
			}
			return a.jobOutcome(conn, j.Id)
		},
	}
	c.Flags().SetInterspersed(false)
	c.Flags().BoolVarP(&follow, "follow", "f", false, "stream the job's output and exit with its exit code")
	c.Flags().BoolVar(&asJSON, "json", false, `print {"id": ...} as JSON`)
	opts.flags(c)
	return c
}

// jobOutcome turns a followed job's end into rnx's exit, as `docker run`
// does: the job's own exit code.
func (a *app) jobOutcome(conn *client.Conn, id string) error {
	ctx, cancel := a.callCtx()
	defer cancel()
	j, err := conn.Jobs.GetJobStatus(ctx, &pb.GetJobStatusRequest{Id: id})
	if err != nil {
		return cutOff(id, conn.Explain(err))
	}
	code := 1
	switch {
	case j.Signal > 0:
		code = 128 + int(j.Signal)
	case j.ExitCode > 0:
		code = int(j.ExitCode)
	}
	switch j.Status {
	case "COMPLETED":
		return nil
	case "FAILED":
		how := fmt.Sprintf("exit code %d", j.ExitCode)
		switch {
		case strings.HasPrefix(j.Reason, "killed at "): // "killed at its memory limit (64 MiB)": says more than the signal
			how = a.clean(j.Reason)
		case j.Signal > 0:
			how = fmt.Sprintf("killed by signal %d", j.Signal)
		}
		fmt.Fprintf(a.errOut, "rnx: job %s failed: %s\n", id, how)
	case "STOPPED":
		fmt.Fprintf(a.errOut, "rnx: job %s was stopped (rnx job stop)\n", id)
	default:
		return fmt.Errorf("the output of job %s ended while it is %s; follow again with: %s", id, strings.ToLower(j.Status), a.resumeCommand(id))
	}
	return &exitError{code: code}
}

// onNodeText is " on node N", or "" for a node that predates IDs naming it.
func onNodeText(node string) string {
	if node == "" {
		return ""
	}
	return " on node " + node
}
