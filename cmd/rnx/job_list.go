package main

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
)

func (a *app) jobListCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the node's jobs, oldest first",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.onNode(func(ctx context.Context, conn *client.Conn) error {
				r, err := conn.Jobs.ListJobs(ctx, &pb.ListJobsRequest{})
				if err != nil {
					return conn.Explain(err)
				}
				if asJSON {
					jobs := make([]jobJSON, 0, len(r.Jobs))
					for _, j := range r.Jobs {
						jobs = append(jobs, toJobJSON(j))
					}
					return a.printJSON(jobs)
				}
				tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tSTATUS\tEXIT\tSTARTED\tSTARTED BY\tCOMMAND")
				for _, j := range r.Jobs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", a.clean(j.Id), a.clean(j.Status), exitText(j), timeText(j.StartedUnixNano), a.clean(j.StartedBy), a.clean(commandLine(j)))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of jobs")
	return c
}
