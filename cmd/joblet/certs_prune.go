package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
)

func (c *cli) pruneCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "prune [--dry-run] [--grace DURATION]",
		Short: "remove the re-issue records (<prefix>/client-reissue/) no run can still need",
		Long: `A role's re-issue (` + "`joblet certs reissue`" + `, and the rotation function's run
for a role's key) first records the new pair in <prefix>/client-reissue/<role>-<old
serial>, so concurrent runs, and a run completing an interrupted one, write the
same pair. Each record holds a private key and no rotation schedule covers it.

prune removes a record once its re-issue is complete (the role's current
certificate is not the one it replaced, matches the role's key, verifies under
the fleet's trust, and is the record's certificate or one issued no earlier, or
the record was made after the role's certificate last changed: a slow run's pair
that never became the role's) and
neither the record nor the role's certificate changed for the grace (default
1h: longer than any run that read the old certificate can still take). Every
other record stays, with the reason printed: an interrupted re-issue (run
reissue again), a record that holds no pair (inspect it), a role certificate put
back from before the record. ` + "`joblet certs reissue`" + ` runs the same prune after
its own writes.

--grace 0 removes completed records at once: only when no other re-issue of the
fleet can be running.`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	sf := addStoreFlags(fs, withDirStore)
	var dryRun, asJSON bool
	grace := certs.ReissueRecordGrace
	fs.BoolVar(&dryRun, "dry-run", false, "print what would be removed; remove nothing")
	fs.DurationVar(&grace, "grace", grace, "how long a completed re-issue's record stays (0: none)")
	fs.BoolVar(&asJSON, "json", false, "print the result as JSON")
	cmd.RunE = func(*cobra.Command, []string) error {
		if grace < 0 {
			return usagef("--grace must not be negative")
		}
		ctx, cancel := sf.context()
		defer cancel()
		fl, err := sf.openFleet(ctx, config.Home(), c.log)
		if err != nil {
			return err
		}
		res, err := fl.PruneReissueRecords(ctx, certs.PruneOptions{Grace: pruneGrace(grace), DryRun: dryRun})
		if res == nil {
			return err
		}
		if asJSON {
			if jerr := printJSON(c.stdout, res); jerr != nil {
				return jerr
			}
			return err
		}
		printPruned(c.stdout, res, true)
		return err
	}
	return cmd
}

// pruneGrace is --grace as PruneOptions takes it (0 there: the default).
func pruneGrace(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// printPruned prints a prune; kept records only when all.
func printPruned(w io.Writer, res *certs.Pruned, all bool) {
	kept := 0
	for _, r := range res.Records {
		switch r.Fate {
		case certs.RecordRemoved:
			fmt.Fprintf(w, "🧹 removed %s (the %s re-issue away from serial %s is complete)\n", r.Secret, r.Role, r.Serial)
		case certs.RecordRemovable:
			fmt.Fprintf(w, "   would remove %s (the %s re-issue away from serial %s is complete)\n", r.Secret, r.Role, r.Serial)
		default:
			kept++
			if all {
				fmt.Fprintf(w, "   kept %s: %s\n", r.Secret, r.Reason)
			}
		}
	}
	if all {
		fmt.Fprintf(w, "%d re-issue record(s) removed, %d kept (grace %s)\n", res.Removed, kept, res.Grace)
	}
}

// pruneAfterReissue runs the prune after a re-issue's writes: records of
// earlier re-issues past their grace go; the one just written stays for
// its grace. A store that cannot list, or a failure, is a warning: the
// re-issue itself succeeded.
func (c *cli) pruneAfterReissue(ctx context.Context, fl *certs.Fleet, quiet bool) *certs.Pruned {
	res, err := fl.PruneReissueRecords(ctx, certs.PruneOptions{})
	if errors.Is(err, certs.ErrUsage) {
		return nil
	}
	if err != nil {
		c.log.Warn("the re-issue records of completed re-issues were not pruned; run `joblet certs prune` later", "error", err)
	}
	if res != nil && !quiet {
		printPruned(c.stdout, res, false)
	}
	return res
}
