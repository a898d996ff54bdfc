package main

import (
	"errors"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestCommandExitCode(t *testing.T) {
	for msg, want := range map[string]int{
		`sandbox init: command "x": exec: "x": executable file not found in $PATH`:    127,
		`exec: "/no/such": stat /no/such: no such file or directory`:                  127,
		`sandbox init: command "/etc/passwd": exec: "/etc/passwd": permission denied`: 126,
		`env: environment name "1A" is not a shell name`:                              0,
	} {
		if got := commandExitCode(status.Error(codes.InvalidArgument, msg)); got != want {
			t.Errorf("%q: %d, want %d", msg, got, want)
		}
	}
	if commandExitCode(status.Error(codes.Unavailable, `exec: "x": executable file not found`)) != 0 || commandExitCode(errors.New("x")) != 0 || commandExitCode(nil) != 0 {
		t.Error("another error mapped to a command exit code")
	}
}
