package main

import (
	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

func (a *app) jobStopCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "stop ID",
		Short: "Stop a job (SIGTERM to its process group, SIGKILL after the node's grace period)",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := a.callCtx()
			defer cancel()
			j, err := conn.Jobs.StopJob(ctx, &pb.StopJobRequest{Id: args[0]})
			if err != nil {
				return conn.Explain(err)
			}
			return a.showJob(j, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the stopped job as JSON")
	return c
}
