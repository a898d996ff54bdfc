package server_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/server"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
)

// A config that became writable by others is not hot-reloaded, even when
// what it holds is valid: the node keeps serving what it had.
func TestReloadRefusesAWritableConfig(t *testing.T) {
	f := startNode(t, nil)
	path := filepath.Join(f.home, "config", "joblet-config.yml")
	s, err := server.New(f.srv, server.Options{ConfigPath: path}, quiet)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Reload(); err != nil {
		t.Fatalf("a private config: %v", err)
	}
	os.Chmod(path, 0o666)
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), "chmod 600 "+path) || !strings.Contains(err.Error(), "still serving the previous certificates") {
		t.Fatalf("reload of a world-writable config: %v", err)
	}
	os.Chmod(path, 0o600)
	os.Chmod(filepath.Dir(path), 0o777)
	if err := s.Reload(); err == nil || !strings.Contains(err.Error(), "chmod 700 "+filepath.Dir(path)) {
		t.Fatalf("reload from a world-writable directory: %v", err)
	}
	reliability.Record(t, "bad input", "the server config (then its directory) made world-writable while the node runs",
		"not reloaded: "+err.Error())
}
