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
	var limit int
	c := &cobra.Command{
		Use:   "list",
		Short: "List the node's jobs, oldest first",
		Long: `List the node's jobs, oldest first (start time, then id).

The node answers in pages (at most its jobs.listPageMax jobs each); rnx asks
for every page unless --limit stops it after the first N jobs.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef(cmd, "--limit %d: give the number of jobs to show, or 0 for all", limit)
			}
			return a.onNode(func(ctx context.Context, conn *client.Conn) error {
				all, err := listJobs(ctx, conn, limit)
				if err != nil {
					return err
				}
				r := &pb.ListJobsResponse{Jobs: all}
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
	c.Flags().IntVar(&limit, "limit", 0, "show only the first (oldest) N jobs; 0: all")
	return c
}

// listJobs fetches the node's jobs page by page, at most limit (0: all).
// A node that predates paging answers everything at once with no token.
func listJobs(ctx context.Context, conn *client.Conn, limit int) ([]*pb.Job, error) {
	var all []*pb.Job
	req := &pb.ListJobsRequest{}
	for {
		if limit > 0 {
			req.PageSize = int32(min(limit-len(all), 1<<20))
		}
		r, err := conn.Jobs.ListJobs(ctx, req)
		if err != nil {
			return nil, conn.Explain(err)
		}
		all = append(all, r.Jobs...)
		if limit > 0 && len(all) >= limit {
			return all[:limit], nil
		}
		if r.NextPageToken == "" {
			return all, nil
		}
		if r.NextPageToken == req.PageToken || len(r.Jobs) == 0 {
			return nil, fmt.Errorf("node %s answered ListJobs with the same page again (token %q): a bug on the node; list with --limit meanwhile", conn.Name, r.NextPageToken)
		}
		req.PageToken = r.NextPageToken
	}
}
