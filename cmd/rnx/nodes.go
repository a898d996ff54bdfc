package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/pki"
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
				Role      string `json:"role"`
			}
			var nodes []nodeJSON
			for _, n := range a.cfg.NodeNames() {
				// The role is the client certificate's: what this entry may do.
				role := "?"
				if c, err := pki.ParseLeaf([]byte(a.cfg.Nodes[n].Cert)); err == nil {
					if r, err := pki.RoleOf(c); err == nil {
						role = string(r)
					}
				}
				nodes = append(nodes, nodeJSON{n, a.cfg.Nodes[n].Address, a.cfg.Nodes[n].IsDefault, role})
			}
			if asJSON {
				if nodes == nil {
					nodes = []nodeJSON{}
				}
				return a.printJSON(nodes)
			}
			tw := tabwriter.NewWriter(a.out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NODE\tADDRESS\tROLE\tDEFAULT")
			for _, n := range nodes {
				d := ""
				if n.IsDefault {
					d = "*"
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", n.Name, n.Address, n.Role, d)
			}
			return tw.Flush()
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print a JSON array of nodes")
	return c
}
