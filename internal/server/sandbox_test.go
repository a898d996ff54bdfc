package server_test

// The server links the jobs contract, not the mechanism (test/layers_test.go):
// its tests link the sandbox the way the joblet binary does, so the jobs
// they start run contained.
import _ "github.com/ehsaniara/joblet/internal/sandbox"
