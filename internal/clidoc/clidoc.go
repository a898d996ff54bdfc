// Package clidoc generates the man pages of a cobra command tree, for the
// packages (scripts/package.sh): the CLI library writes them from the same
// commands and flags the binaries parse, so they cannot drift.
package clidoc

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

// ManCommand is a hidden `man DIR` command that writes a man page (section
// 1) for root and each of its commands into DIR. source is the version
// line shown in each page's footer.
func ManCommand(source string) *cobra.Command {
	return &cobra.Command{
		Use:    "man DIR",
		Short:  "write the man pages into DIR (for packaging)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return err
			}
			root := cmd.Root()
			root.DisableAutoGenTag = true
			hdr := &doc.GenManHeader{Section: "1", Source: source, Manual: "joblet manual"}
			// SOURCE_DATE_EPOCH: reproducible pages, as the binaries.
			if v := os.Getenv("SOURCE_DATE_EPOCH"); v != "" {
				var sec int64
				if _, err := fmt.Sscan(v, &sec); err == nil {
					t := time.Unix(sec, 0).UTC()
					hdr.Date = &t
				}
			}
			return doc.GenManTree(root, hdr, args[0])
		},
	}
}
