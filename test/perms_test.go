package test

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
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

// The embedded store is created private (0700 directories, 0600 files);
// once others can write it, a local unprivileged user who writes a bundle
// holding their own CA there gains nothing: the running node refuses to
// refresh from it (and to reload), its trust stays the same, the forged
// admin is refused; a restart is refused naming the directory and the
// `chmod` that fixes it, and so is a `certs` command reading the store.
func TestWritableStoreRefused(t *testing.T) {
	joblet, rnx := harness.Bins(t)
	home := t.TempDir()
	port := harness.FreePort(t)
	env := harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(port))
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	store := filepath.Join(home, "ca")
	filepath.WalkDir(store, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		want := map[bool]os.FileMode{true: 0o700, false: 0o600}[d.IsDir()]
		if fi, _ := os.Stat(p); fi.Mode().Perm() != want {
			t.Errorf("%s created with mode %04o, want %04o", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	srv := harness.Start(t, env, joblet, "server", "--config", cfgPath)
	admin := harness.Env("RNX_CONFIG=" + filepath.Join(home, "config", "rnx-config.yml"))
	harness.Eventually(t, 20*time.Second, "node serving", func() error {
		if r := harness.Run(t, admin, rnx, "info"); r.Code != 0 {
			return errors.New(r.String())
		}
		return nil
	})
	trustBefore := serverConfig(t, home).Security.CACert

	// The attacker's own fleet: its CA and an admin client certificate.
	other, _ := embeddedHome(t)
	mine, err := config.LoadRnx(filepath.Join(home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	theirs, err := config.LoadRnx(filepath.Join(other, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for name, n := range mine.Nodes {
		n.Cert, n.Key = theirs.Nodes[name].Cert, theirs.Nodes[name].Key
	}
	forged := writeRnx(t, mine)
	if r := harness.Run(t, harness.Env(), rnx, "--config", forged, "info"); r.Code == 0 {
		t.Fatalf("the forged admin was served before the attack: %s", r)
	}
	bundle := serverConfig(t, home).Security.CACert + serverConfig(t, other).Security.CACert

	// The mistake: the store left writable by everyone; the attacker, uid
	// 65534, reaches it through directories they may only traverse.
	for _, d := range []string{filepath.Dir(home), home} {
		os.Chmod(d, 0o711)
	}
	for _, d := range []string{store, filepath.Join(store, "joblet")} {
		os.Chmod(d, 0o777)
	}
	// The directory is writable by all: the file in it (root's, 0600) can be
	// replaced by anyone.
	write := exec.Command("sh", "-c", `rm -f "$0" && cat > "$0"`, filepath.Join(store, "joblet", "ca-bundle"))
	write.Stdin = strings.NewReader(bundle)
	write.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	if out, err := write.CombinedOutput(); err != nil {
		t.Fatalf("the unprivileged write: %v: %s", err, out)
	}
	srv.Cmd.Process.Signal(syscall.SIGHUP)
	harness.Eventually(t, 30*time.Second, "the node refusing the store", func() error {
		if !strings.Contains(srv.Output(), "run `chmod 700 "+store+"`") {
			return errors.New("not logged yet")
		}
		return nil
	})
	// Refreshes went on failing meanwhile (interval 1s): give the node a
	// few more, then check nothing was taken.
	harness.Eventually(t, 30*time.Second, "more refused refreshes", func() error {
		if strings.Count(srv.Output(), "chmod 700 "+store) < 3 {
			return errors.New("fewer than 3 refusals logged")
		}
		return nil
	})
	if got := serverConfig(t, home).Security.CACert; got != trustBefore {
		t.Fatalf("the node's trust changed from a world-writable store:\n%s", got)
	}
	if r := harness.Run(t, harness.Env(), rnx, "--config", forged, "info"); r.Code == 0 {
		t.Fatalf("the forged admin was served after the attack: %s", r)
	}
	harness.MustRun(t, admin, rnx, "info")

	s := harness.Run(t, env, joblet, "server", "--config", cfgPath)
	if s.Code != 1 || !strings.Contains(s.Stderr, store) || !strings.Contains(s.Stderr, "run `chmod 700 "+store+"`") {
		t.Fatalf("server with a world-writable store: %s", s)
	}
	st := harness.Run(t, env, joblet, "certs", "status")
	if st.Code == 0 || !strings.Contains(st.Stdout+st.Stderr, "run `chmod 700 "+store+"`") {
		t.Fatalf("certs status with a world-writable store: %s", st)
	}
	// Fixed modes, the attacker's file (theirs, uid 65534) still refused.
	for _, d := range []string{store, filepath.Join(store, "joblet")} {
		os.Chmod(d, 0o700)
	}
	s = harness.Run(t, env, joblet, "server", "--config", cfgPath)
	if s.Code != 1 || !strings.Contains(s.Stderr, "belongs to uid 65534") {
		t.Fatalf("server with a file of another user in the store: %s", s)
	}
	reliability.Record(t, "security", "embedded store made world-writable; uid 65534 writes a ca-bundle holding its own CA; SIGHUP and 1s refreshes",
		"every refresh refused, trust unchanged, forged admin refused, real admin served; restart refused: "+lastLine(s.Stderr))
}
