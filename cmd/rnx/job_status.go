package main

import (
	"context"

	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
)

func (a *app) jobStatusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status ID",
		Short: "Show one job",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.onJob(args[0], func(ctx context.Context, conn *client.Conn) error {
				j, err := conn.Jobs.GetJobStatus(ctx, &pb.GetJobStatusRequest{Id: args[0]})
				if err != nil {
					return conn.Explain(err)
				}
				return a.showJob(j, asJSON)
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON")
	return c
}

func (a *app) showJob(j *pb.Job, asJSON bool) error {
	if asJSON {
		return a.printJSON(toJobJSON(j))
	}
	printJob(a.out, j, a.clean)
	return nil
}
