package main

import (
	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
)

func (a *app) jobStatusCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "status ID",
		Short: "Show one job",
		Args:  oneID,
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := a.dial()
			if err != nil {
				return err
			}
			defer conn.Close()
			ctx, cancel := a.callCtx()
			defer cancel()
			j, err := conn.Jobs.GetJobStatus(ctx, &pb.GetJobStatusRequest{Id: args[0]})
			if err != nil {
				return conn.Explain(err)
			}
			return a.showJob(j, asJSON)
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print the job as JSON")
	return c
}

func (a *app) showJob(j *pb.Job, asJSON bool) error {
	if asJSON {
		return a.printJSON(toJobJSON(j))
	}
	printJob(a.out, j)
	return nil
}
