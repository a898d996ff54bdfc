package main

import (
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// exportCmd writes an embedded install from a shared store: the shared
// secrets go into HOME/ca (the private store), then bootstrap writes the
// config files from it.
func (c *cli) exportCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "export [bootstrap flags] [--replace]",
		Short: "write an embedded install from a shared store (to run off AWS)",
		Args:  noArgs,
	}
	f := addBootFlags(cmd.Flags(), withDirStore)
	var replace bool
	cmd.Flags().BoolVar(&replace, "replace", false, "replace a different CA already in HOME/ca")
	cmd.RunE = func(*cobra.Command, []string) error {
		o, err := f.options(c.log)
		if err != nil {
			return err
		}
		ctx, cancel := f.sf.context()
		defer cancel()
		src, err := f.sf.open(ctx, o.Home, c.log)
		if err != nil {
			return err
		}
		if src.Mode == config.ModeEmbedded {
			return usagef("export reads a shared store: set USE_SECRETS_MANAGER=true (or --store dir:PATH)")
		}
		root := filepath.Join(o.Home, "ca")
		dst, err := secretstore.NewDirStore(root)
		if err != nil {
			return err
		}
		from := f.sf.fleet(src, c.log)
		from.Pin = o.Pin
		// Before anything is copied: a pinned export takes only the pinned root.
		if err := from.CheckPin(ctx); err != nil {
			return err
		}
		if err := from.Export(ctx, dst, replace); err != nil {
			return err
		}
		if !f.asJSON {
			fmt.Fprintf(c.stdout, "exported the shared certificates from %s into %s\n", src.Desc, root)
		}
		o.Store, o.StoreDesc, o.Mode, o.StoreRef = dst, "directory store "+root, config.ModeEmbedded, config.StoreRef{Kind: config.ModeDir, Dir: root}
		return runBootstrap(ctx, o, f.asJSON, c.stdout, c.stderr)
	}
	return cmd
}
