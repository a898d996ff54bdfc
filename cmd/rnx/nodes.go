package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func (a *app) nodesCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "nodes",
		Short: "List the nodes in the config (no network)",
		Args:  noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := a.load(); err != nil {
				return err
			}
			type nodeJSON struct {
				Name      string `json:"name"`
				Address   string `json:"address"`
				IsDefault bool   `json:"isDefault"`
			}
			var nodes []nodeJSON
			for _, n := range a.cfg.NodeNames() {
				nodes = append(nodes, nodeJSON{n, a.cfg.Nodes[n].Address, a.cfg.Nodes[n].IsDefault})
			}
			if asJSON {
				if nodes == nil {
					nodes = []nodeJSON{}
				}
				return a.printJSON(nodes)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tADDRESS\tDEFAULT")
			for _, n := range nodes {
				d := ""
				if n.IsDefault {
					d = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\n", n.Name, n.Address, d)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of nodes")
	return c
}
