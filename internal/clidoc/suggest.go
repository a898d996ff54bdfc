package clidoc

import (
	"sort"
	"strings"

	"github.com/spf13/pflag"
)

// FlagSuggestion is "; did you mean --a or --b?" for a flag parse error
// about an unknown long flag, from the flags fs knows; "" otherwise. cobra
// suggests commands (SuggestFor) but not flags.
func FlagSuggestion(fs *pflag.FlagSet, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return ""
	}
	if s := SimilarFlags(fs, name); len(s) > 0 {
		return "; did you mean --" + strings.Join(s, " or --") + "?"
	}
	return ""
}

// SimilarFlags are the visible flags within edit distance 2 of name, or
// that start with it or it with them.
func SimilarFlags(fs *pflag.FlagSet, name string) []string {
	var out []string
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Deprecated != "" {
			return
		}
		if distance(f.Name, name) <= 2 || (len(name) >= 3 && (strings.HasPrefix(f.Name, name) || strings.HasPrefix(name, f.Name))) {
			out = append(out, f.Name)
		}
	})
	sort.Strings(out)
	return out
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}
