package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/buildinfo"
)

func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print rnx's version (needs no config)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(a.out, buildinfo.String("rnx"))
			return err
		},
	}
}
