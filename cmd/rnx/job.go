package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	pb "github.com/ehsaniara/joblet/api/jobletv1"
	"github.com/ehsaniara/joblet/internal/jobid"
)

func (a *app) jobCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "job",
		Short: "Run, list, inspect, follow and stop jobs",
		Args:  cobra.ArbitraryArgs,
		RunE:  group("run, list, status, log, stop"),
	}
	c.AddCommand(a.jobRunCmd(), a.jobListCmd(), a.jobStatusCmd(), a.jobLogCmd(), a.jobStopCmd())
	c.PersistentFlags().BoolVar(&a.raw, "raw", false, "print job output and fields as they are, control characters included (to a terminal they are escaped as \\xNN; to a pipe or file never)")
	return c
}

// jobJSON is a job as --json prints it: lowerCamel keys, RFC 3339 times.
type jobJSON struct {
	ID              string   `json:"id"`
	Node            string   `json:"node,omitempty"` // the node running it (as its ID names it)
	Status          string   `json:"status"`         // RUNNING, COMPLETED, FAILED, STOPPED
	ExitCode        *int32   `json:"exitCode"`       // null while running
	Signal          int32    `json:"signal,omitempty"`
	Command         string   `json:"command"`
	Args            []string `json:"args"`
	Started         string   `json:"started"`
	Ended           string   `json:"ended,omitempty"`
	StartedBy       string   `json:"startedBy"`       // the role
	StartedByPerson string   `json:"startedByPerson"` // the person (rnx login), "" for a shared role certificate
	OutputTruncated bool     `json:"outputTruncated"`
	Reason          string   `json:"reason,omitempty"`     // how it ended
	ArgsHidden      bool     `json:"argsHidden,omitempty"` // your role may not see its arguments
	Limits          *limits  `json:"limits,omitempty"`     // in force; absent from a node that predates them
}

type limits struct {
	MemoryBytes int64 `json:"memoryBytes"`
	CPUPercent  int32 `json:"cpuPercent"`
	Procs       int32 `json:"procs"`
}

func toJobJSON(j *pb.Job) jobJSON {
	out := jobJSON{ID: j.Id, Status: j.Status, Signal: j.Signal, Command: j.Command, Args: j.Args,
		Started: timeText(j.StartedUnixNano), StartedBy: j.StartedBy, StartedByPerson: j.StartedByPerson,
		OutputTruncated: j.OutputTruncated, Reason: j.Reason, ArgsHidden: j.ArgsHidden}
	if out.Args == nil {
		out.Args = []string{}
	}
	out.Node, _ = jobid.Node(j.Id)
	if limitsText(j) != "" {
		out.Limits = &limits{MemoryBytes: j.MaxMemoryBytes, CPUPercent: j.MaxCpuPercent, Procs: j.MaxProcs}
	}
	if j.EndedUnixNano != 0 {
		code := j.ExitCode
		out.ExitCode = &code
		out.Ended = timeText(j.EndedUnixNano)
	}
	return out
}

// timeText is the one format of a time in rnx's output: RFC 3339, UTC,
// whole seconds.
func timeText(unixNano int64) string {
	return time.Unix(0, unixNano).UTC().Format(time.RFC3339)
}

// personText is who started a job, as the tables show it: the person's
// canonical ARN (rnx login), or "shared" for a shared role certificate
// (whoever holds that role's rnx-config; the role is the STARTED BY
// column), as the node's audit line says it.
func personText(j *pb.Job) string {
	if j.StartedByPerson == "" {
		return "shared"
	}
	return j.StartedByPerson
}

func exitText(j *pb.Job) string {
	switch {
	case j.EndedUnixNano == 0:
		return "-"
	case j.Signal != 0:
		return fmt.Sprintf("signal %d", j.Signal)
	}
	return fmt.Sprint(j.ExitCode)
}

// commandLine is a job's command as a shell would take it back (before
// app.clean escapes what a terminal must not receive).
func commandLine(j *pb.Job) string {
	words := make([]string, 0, 1+len(j.Args))
	for _, w := range append([]string{j.Command}, j.Args...) {
		words = append(words, shellQuote(w))
	}
	if j.ArgsHidden {
		words = append(words, "(arguments hidden from your role)")
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for a POSIX shell when it holds anything but plain
// characters.
func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	plain := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=@%+,", r)) {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// printJob is the human form of one job (status, stop); what the node or
// the job chose goes through clean.
func printJob(w io.Writer, j *pb.Job, clean func(string) string) {
	fmt.Fprintf(w, "id:          %s\nstatus:      %s\nexit:        %s\ncommand:     %s\nstarted:     %s\nstarted by:  %s\nperson:      %s\n",
		clean(j.Id), clean(j.Status), exitText(j), clean(commandLine(j)), timeText(j.StartedUnixNano), clean(j.StartedBy), clean(personText(j)))
	if node, _ := jobid.Node(j.Id); node != "" {
		fmt.Fprintf(w, "node:        %s\n", node)
	}
	if j.EndedUnixNano != 0 {
		fmt.Fprintf(w, "ended:       %s\n", timeText(j.EndedUnixNano))
	}
	if j.Reason != "" {
		fmt.Fprintf(w, "reason:      %s\n", clean(j.Reason))
	}
	if l := limitsText(j); l != "" {
		fmt.Fprintf(w, "limits:      %s\n", l)
	}
	if j.OutputTruncated {
		fmt.Fprintln(w, "output:      truncated (the node kept only the newest output)")
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // a job's "a > b && c" reads as written
	return enc.Encode(v)
}
