package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"text/tabwriter"

	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/client"
)

func (a *app) jobListCmd() *cobra.Command {
	var asJSON bool
	var limit int
	var fleet bool
	c := &cobra.Command{
		Use:   "list",
		Short: "List the node's jobs, oldest first",
		Long: `List the node's jobs, oldest first (start time, then id).

The node answers in pages (at most its jobs.listPageMax jobs each); rnx asks
for every page unless --limit stops it after the first N jobs.

Through a load balancer that is the jobs of whichever node answers: --fleet
lists every node's, found from the node directory (the config's entries of
this fleet, --nodes, JOBLET_NODES) and through the selected entry (a
balancer) by new connections until no new node answers (docs/JOBS.md). Nodes that fail
are named on stderr and make the exit code 1.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usagef(cmd, "--limit %d: give the number of jobs to show, or 0 for all", limit)
			}
			if fleet {
				return a.listFleet(limit, asJSON)
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
				fmt.Fprintln(tw, "ID\tSTATUS\tEXIT\tSTARTED\tSTARTED BY\tPERSON\tCOMMAND")
				for _, j := range r.Jobs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.clean(j.Id), a.clean(j.Status), exitText(j), timeText(j.StartedUnixNano), a.clean(j.StartedBy), a.clean(personText(j)), a.clean(commandLine(j)))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of jobs")
	c.Flags().IntVar(&limit, "limit", 0, "show only the first (oldest) N jobs; 0: all (with --fleet: per node)")
	c.Flags().BoolVar(&fleet, "fleet", false, "list the jobs of every node found (the node directory, and through a load balancer), with a NODE column")
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

// listFleet lists the jobs of every node the router finds, by start time,
// with each job's node.
func (a *app) listFleet(limit int, asJSON bool) error {
	r, err := a.router()
	if err != nil {
		return err
	}
	ctx, cancel := a.callCtx()
	defer cancel()
	nodes, problems := r.Sweep(ctx)
	type nodeJobs struct {
		jobs []*pb.Job
		err  error
	}
	results := make([]nodeJobs, len(nodes))
	var wg sync.WaitGroup
	sem := make(chan struct{}, 8)
	for i, n := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			defer n.Conn.Close()
			results[i].jobs, results[i].err = listJobs(ctx, n.Conn, limit)
		}()
	}
	wg.Wait()
	type row struct {
		node string
		job  *pb.Job
	}
	var rows []row
	var names []string
	for i, n := range nodes {
		if results[i].err != nil {
			problems = append(problems, fmt.Errorf("node %s: %w", n.ID, results[i].err))
			continue
		}
		names = append(names, n.ID)
		for _, j := range results[i].jobs {
			rows = append(rows, row{n.ID, j})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i].job, rows[j].job
		if a.StartedUnixNano != b.StartedUnixNano {
			return a.StartedUnixNano < b.StartedUnixNano
		}
		return a.Id < b.Id
	})
	fmt.Fprintf(a.errOut, "rnx: jobs of %d node(s): %s\n", len(names), strings.Join(names, ", "))
	if asJSON {
		jobs := make([]jobJSON, 0, len(rows))
		for _, r := range rows {
			j := toJobJSON(r.job)
			j.Node = r.node
			jobs = append(jobs, j)
		}
		err = a.printJSON(jobs)
	} else {
		tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tID\tSTATUS\tEXIT\tSTARTED\tSTARTED BY\tPERSON\tCOMMAND")
		for _, r := range rows {
			j := r.job
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", a.clean(r.node), a.clean(j.Id), a.clean(j.Status), exitText(j), timeText(j.StartedUnixNano), a.clean(j.StartedBy), a.clean(personText(j)), a.clean(commandLine(j)))
		}
		err = tw.Flush()
	}
	if err != nil {
		return err
	}
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintln(a.errOut, "rnx: warning:", p)
		}
		return fmt.Errorf("%d of the fleet's nodes or entry points could not be listed (above)", len(problems))
	}
	return nil
}
