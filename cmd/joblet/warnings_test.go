package main

import (
	"strings"
	"testing"
)

// A bootstrap's warning (here: the node that created the fleet holds the
// role keys) is printed once, not logged as well.
func TestBootstrapWarningOnce(t *testing.T) {
	code, out, errs := runIn(t, "certs", "bootstrap", "--home", t.TempDir(), "--server-address", "127.0.0.1", "--store", "dir:"+t.TempDir())
	const w = "this node created the fleet, and its client configs"
	if code != 0 || strings.Count(out+errs, w) != 1 {
		t.Fatalf("exit %d; the warning %d times:\nstdout:\n%s\nstderr:\n%s", code, strings.Count(out+errs, w), out, errs)
	}
}
