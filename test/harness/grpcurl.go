package harness

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// Grpcurl finds grpcurl ($GRPCURL, then PATH, then .tmp/bin where
// scripts/lib/deps.sh installs it). Missing is a failure, never a skip.
func Grpcurl(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("GRPCURL"); p != "" {
		return p
	}
	if p, err := exec.LookPath("grpcurl"); err == nil {
		return p
	}
	_, file, _, _ := runtime.Caller(0)
	p := filepath.Join(filepath.Dir(file), "..", "..", ".tmp", "bin", "grpcurl")
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatal("grpcurl is required and not installed: run `. scripts/lib/deps.sh` (scripts/test.sh does) or set GRPCURL")
	return ""
}
