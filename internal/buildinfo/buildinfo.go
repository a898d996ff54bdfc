// Package buildinfo holds the version stamped into both binaries at build
// time, so `joblet version`, `rnx version` and NodeInfo agree:
//
//	go build -ldflags "-X github.com/ehsaniara/joblet/internal/buildinfo.Version=v1.2.3 \
//	  -X github.com/ehsaniara/joblet/internal/buildinfo.Commit=$(git rev-parse --short HEAD) \
//	  -X github.com/ehsaniara/joblet/internal/buildinfo.Date=$(date -u +%FT%TZ)"
package buildinfo

import (
	"fmt"
	"runtime/debug"
)

// Set with -ldflags -X; "dev" and the VCS stamp of `go build` otherwise.
var (
	Version = "dev"
	Commit  = ""
	Date    = ""
)

// commit is the stamped commit, else the one `go build` recorded from the
// checkout (Go embeds vcs.revision when building inside a git tree).
func commit() (rev, date string) {
	rev, date = Commit, Date
	if rev != "" {
		return rev, date
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				if len(s.Value) > 12 {
					rev = s.Value[:12]
				} else {
					rev = s.Value
				}
			case "vcs.time":
				if date == "" {
					date = s.Value
				}
			}
		}
	}
	return rev, date
}

// String is the one-line version both binaries print.
func String(program string) string {
	rev, date := commit()
	if rev == "" {
		rev = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s, built %s)", program, Version, rev, date)
}
