package test

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// A $JOBLET_HOME others can write is refused by bootstrap (nothing
// written), and a server config others can write by `joblet server`, each
// with the command that fixes it.
func TestWritableHomeRefused(t *testing.T) {
	joblet, _ := harness.Bins(t)
	home := filepath.Join(t.TempDir(), "home")
	os.Mkdir(home, 0o700)
	os.Chmod(home, 0o777)
	env := harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(harness.FreePort(t)))
	r := harness.Run(t, env, joblet, "certs", "bootstrap")
	if r.Code != 1 || !strings.Contains(r.Stderr, "run `chmod 700 "+home+"`") {
		t.Fatalf("bootstrap in a world-writable home: %s", r)
	}
	noFiles(t, home)
	os.Chmod(home, 0o700)
	harness.MustRun(t, env, joblet, "certs", "bootstrap")

	cfg := filepath.Join(home, "config", "joblet-config.yml")
	os.Chmod(cfg, 0o660)
	s := harness.Run(t, env, joblet, "server", "--config", cfg)
	if s.Code != 1 || !strings.Contains(s.Stderr, "run `chmod 600 "+cfg+"`") {
		t.Fatalf("server with a group-writable config: %s", s)
	}
	reliability.Record(t, "bad input", "JOBLET_HOME mode 0777 at bootstrap; then the server config mode 0660 at `joblet server`",
		"bootstrap refused, nothing written: "+lastLine(r.Stderr)+"; the server refused to start: "+lastLine(s.Stderr))
}
