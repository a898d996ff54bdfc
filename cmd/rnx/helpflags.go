package main

import (
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// globalsUsed are the root's flags each command that does not talk to a
// node uses, by its path without "rnx"; every other command uses them all.
// Help lists only those (the others would do nothing there).
var globalsUsed = map[string][]string{
	"":               {},
	"version":        {},
	"help":           {},
	"completion":     {},
	"nodes":          {"config"},
	"config":         {"config"},
	"config init":    {"config"},
	"config refresh": {"config"},
}

// helpWithUsedFlags wraps a help function so that it hides the global
// flags the command does not use. rnx prints one help and exits, so the
// flags stay hidden for nothing else.
func helpWithUsedFlags(help func(*cobra.Command, []string)) func(*cobra.Command, []string) {
	return func(cmd *cobra.Command, args []string) {
		path := strings.TrimPrefix(strings.TrimPrefix(cmd.CommandPath(), cmd.Root().Name()), " ")
		if strings.HasPrefix(path, "completion ") {
			path = "completion"
		}
		if used, ok := globalsUsed[path]; ok && cmd != cmd.Root() {
			cmd.InheritedFlags().VisitAll(func(f *pflag.Flag) {
				if !slices.Contains(used, f.Name) {
					f.Hidden = true
				}
			})
		}
		help(cmd, args)
	}
}
