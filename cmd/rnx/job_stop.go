package main

import (
	"context"

	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
)

func (a *app) jobStopCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a job (SIGTERM, then its whole cgroup killed after the node's grace period)",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onJob(args[0], func(ctx context.Context, conn *client.Conn) error {
				j, err := conn.Jobs.StopJob(ctx, &pb.StopJobRequest{Id: args[0]})
				if err != nil {
					return conn.Explain(err)
				}
				return a.showJob(j, asJSON)
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the stopped job as JSON")
	return c
}
