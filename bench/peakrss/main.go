// Command peakrss runs a command and prints its peak resident set size in
// KiB (the rusage maxrss the kernel keeps for it) on stderr's last line.
// The benchmark starts commands through it because Go starts a child with
// vfork: until the child's exec the two share memory, and the child's
// maxrss then counts the parent's, the large benchmark process's. This
// program is small, so what it passes on is below any command measured.
// Never part of a release.
package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: peakrss COMMAND [ARG ...]")
		os.Exit(2)
	}
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	err := cmd.Run()
	if cmd.ProcessState == nil {
		fmt.Fprintln(os.Stderr, "peakrss:", err)
		os.Exit(1)
	}
	fmt.Fprintf(os.Stderr, "peakrss %d\n", cmd.ProcessState.SysUsage().(*syscall.Rusage).Maxrss)
	os.Exit(cmd.ProcessState.ExitCode())
}
