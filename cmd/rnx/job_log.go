package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/spf13/cobra"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
)

func (a *app) jobLogCmd() *cobra.Command {
	var follow bool
	c := &cobra.Command{
		Use:   "log ID",
		Short: "Print a job's output: its stdout to stdout, its stderr to stderr",
		Long: `Print a job's output: its stdout to stdout, its stderr to stderr. The
job's node is found from its ID, through a load balancer or directly (see
rnx --help).

With -f, keep printing until the job ends and exit as "job run --follow"
does: with the job's own exit code (128+N for a job killed by signal N), 1
with a message when the output is cut (the node died or restarted), 130
when interrupted (the job keeps running).`,
		Args: oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if !follow {
				return a.onJob(id, func(ctx context.Context, conn *client.Conn) error {
					return a.streamLogs(ctx, conn, id, false)
				})
			}
			ctx, cancel := a.callCtx()
			conn, err := a.reach(ctx, id)
			cancel()
			if err != nil {
				return err
			}
			defer conn.Close()
			if err := a.follow(conn, id, nil); err != nil {
				return notFound(id, err)
			}
			return a.jobOutcome(conn, id)
		},
	}
	c.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until the job ends; exit with the job's exit code")
	return c
}

// streamLogs writes a job's output as the node sends it: the job's stdout
// to stdout, its stderr to stderr, and a marker on stderr where the node
// had dropped output.
func (a *app) streamLogs(ctx context.Context, c *client.Conn, id string, follow bool) error {
	s, err := c.Jobs.GetJobLogs(ctx, &pb.GetJobLogsRequest{Id: id, Follow: follow})
	if err != nil {
		return c.Explain(err)
	}
	out, errOut := a.display(a.out), a.display(a.errOut)
	defer out.Flush()
	defer errOut.Flush()
	for {
		chunk, err := s.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return c.Explain(err)
		}
		if chunk.DroppedBytes > 0 {
			fmt.Fprintf(a.errOut, "[joblet: earlier output dropped: the job wrote %d bytes more than the node keeps (jobs.logBufferBytes, 1 MiB by default)]\n", chunk.DroppedBytes)
		}
		w := out
		if chunk.Stream == pb.Stream_STREAM_STDERR {
			w = errOut
		}
		if _, err := w.Write(chunk.Data); err != nil {
			return err
		}
	}
}

// interrupts catches SIGINT and SIGTERM while rnx follows a job, so they
// end the following, never rnx before it can say how to resume.
type interrupts struct {
	c   chan os.Signal
	got atomic.Value
}

func catchInterrupts() *interrupts {
	in := &interrupts{c: make(chan os.Signal, 1)}
	signal.Notify(in.c, syscall.SIGINT, syscall.SIGTERM)
	return in
}

func (in *interrupts) stop() { signal.Stop(in.c) }

// follow streams a job's output until it ends. SIGINT or SIGTERM ends only
// the following, never the job: rnx says how to resume and exits 130 (143).
// in catches them from before the job was started; nil catches them now.
func (a *app) follow(c *client.Conn, id string, in *interrupts) error {
	if in == nil {
		in = catchInterrupts()
		defer in.stop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case s := <-in.c:
			in.got.Store(s)
			cancel()
		case <-ctx.Done():
		}
	}()
	err := a.streamLogs(ctx, c, id, true)
	if s, ok := in.got.Load().(os.Signal); ok {
		fmt.Fprintf(a.errOut, "\nrnx: stopped following; job %s keeps running. Follow again with: %s\n", id, a.resumeCommand(id))
		return &exitError{code: 128 + int(s.(syscall.Signal))}
	}
	return cutOff(id, err)
}

// cutOff says what a lost connection means to a follower: the job's end
// is unknown, which no script may take for success.
func cutOff(id string, err error) error {
	if status.Code(err) == codes.Unavailable {
		return fmt.Errorf("the output of job %s was cut: the connection to its node was lost (the node may have died or restarted), so how the job ended is unknown; `rnx job status %s` tells once the node is back: %w", id, id, err)
	}
	return err
}

// resumeCommand is the command that follows job id again, with the flags
// that chose its node.
func (a *app) resumeCommand(id string) string {
	parts := []string{"rnx"}
	if a.cfgPath != "" {
		parts = append(parts, "--config", shellQuote(a.cfgPath))
	}
	if a.nodeName != "" {
		parts = append(parts, "--node", shellQuote(a.nodeName))
	}
	return strings.Join(append(parts, "job", "log", "-f", id), " ")
}
