package main

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes of a job whose command could not be started, as shells and
// `docker run` use them, so scripts can tell "no such command" from a
// command that ran and failed.
const (
	exitNotExecutable = 126
	exitNotFound      = 127
)

// commandExitCode is the exit code for a RunJob refused because the node
// could not start the command (it resolves it as the job would, and says
// why in the words of Go's os/exec): 127 not found, 126 found but not
// executable; 0 for any other error.
func commandExitCode(err error) int {
	st, ok := status.FromError(err)
	if !ok || st.Code() != codes.InvalidArgument || !strings.Contains(st.Message(), `exec: "`) {
		return 0
	}
	switch msg := st.Message(); {
	case strings.Contains(msg, "executable file not found"), strings.Contains(msg, "no such file or directory"):
		return exitNotFound
	case strings.Contains(msg, "permission denied"), strings.Contains(msg, "is a directory"):
		return exitNotExecutable
	}
	return 0
}
