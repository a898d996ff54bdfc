package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/buildinfo"
)

func (c *cli) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "print the version (no config or store needed)",
		Args:  noArgs,
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprintln(c.stdout, buildinfo.String("joblet"))
			return nil
		},
	}
}
