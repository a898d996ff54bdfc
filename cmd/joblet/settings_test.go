package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/config"
)

// clearVars unsets variables for one test, restoring them after it.
func clearVars(t *testing.T, names ...string) {
	for _, k := range names {
		t.Setenv(k, "")
		os.Unsetenv(k)
	}
}

// --settings FILE: read only when named; flag > environment > file >
// the node's existing config > default.
func TestBootstrapSettingsFile(t *testing.T) {
	clearVars(t, "JOBLET_SERVER_ADDRESS", "JOBLET_LISTEN_ADDRESS", "JOBLET_SERVER_PORT", "JOBLET_ADDITIONAL_NAMES",
		"JOBLET_PUBLIC_ADDRESS", "JOBLET_NODE_ID", "JOBLET_METRICS_ADDRESS", "FORCE_REGENERATE", "JOBLET_KEY_TYPE")
	home := t.TempDir()
	file := filepath.Join(t.TempDir(), "joblet")
	os.WriteFile(file, []byte(`# a comment
USE_SECRETS_MANAGER=false
JOBLET_SERVER_ADDRESS=127.0.0.1
JOBLET_LISTEN_ADDRESS="127.0.0.1"
JOBLET_SERVER_PORT=50071
JOBLET_ADDITIONAL_NAMES=node1.internal
JOBLET_NODE_ID=from-file
`), 0o644)
	srv := func() *config.Server {
		s, err := config.LoadServer(filepath.Join(home, "config", "joblet-config.yml"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// The environment beats the file, a flag beats both.
	t.Setenv("JOBLET_NODE_ID", "from-env")
	code, _, errs := runIn(t, "certs", "bootstrap", "--home", home, "--settings", file, "--port", "50072")
	if code != 0 {
		t.Fatalf("bootstrap --settings: exit %d: %s", code, errs)
	}
	s := srv()
	if s.Server.Address != "127.0.0.1" || s.Server.Port != 50072 || s.Server.NodeID != "from-env" ||
		s.Server.ServerAddress != "127.0.0.1" || strings.Join(s.Server.AdditionalNames, ",") != "node1.internal" || s.Store.Kind != "dir" {
		t.Fatalf("settings not applied with their precedence: %+v %+v", s.Server, s.Store)
	}
	// Without --settings the file is never read: the node's config decides.
	// (applySettings puts the file into this process's environment, as
	// the unit does for the service: take it out again.)
	fileVars := []string{"USE_SECRETS_MANAGER", "JOBLET_SERVER_ADDRESS", "JOBLET_LISTEN_ADDRESS", "JOBLET_SERVER_PORT", "JOBLET_ADDITIONAL_NAMES", "JOBLET_NODE_ID"}
	clearVars(t, fileVars...)
	if code, _, errs := runIn(t, "certs", "bootstrap", "--home", home); code != 0 {
		t.Fatalf("re-run: exit %d: %s", code, errs)
	}
	if s := srv(); s.Server.Port != 50072 || s.Server.NodeID != "from-env" || s.Server.Address != "127.0.0.1" {
		t.Fatalf("re-run without settings changed the node: %+v", s.Server)
	}
	// The file over the node's config: its port (50071) is a change,
	// refused naming both, unless --reconfigure.
	code, _, errs = runIn(t, "certs", "bootstrap", "--home", home, "--settings", file)
	if code != 2 || !strings.Contains(errs, "from 50072 to 50071") {
		t.Fatalf("settings moving the port: exit %d: %s", code, errs)
	}
	clearVars(t, fileVars...)
	if code, _, errs := runIn(t, "certs", "bootstrap", "--home", home, "--settings", file, "--reconfigure"); code != 0 {
		t.Fatalf("--reconfigure: exit %d: %s", code, errs)
	}
	if s := srv(); s.Server.Port != 50071 || s.Server.NodeID != "from-file" {
		t.Fatalf("settings over the node's config: %+v", s.Server)
	}
	clearVars(t, fileVars...)

	// A file systemd and sh would read differently, or one that would
	// regenerate the CA on every run: refused, naming the line.
	for body, want := range map[string]string{
		"JOBLET_SERVER_PORT = 1\n":                         "line 1",
		"USE_SECRETS_MANAGER=false\nJOBLET_HOME=$HOME/j\n": "line 2",
		"FORCE_REGENERATE=true\n":                          "FORCE_REGENERATE=true",
		"JOBLET_SERVER_PORT=notaport\n":                    `port "notaport"`,
	} {
		os.WriteFile(file, []byte(body), 0o644)
		code, _, errs := runIn(t, "certs", "bootstrap", "--home", t.TempDir(), "--settings", file)
		if code != 2 || !strings.Contains(errs, want) {
			t.Errorf("%q: exit %d, want 2 and %q: %s", body, code, want, errs)
		}
		clearVars(t, "USE_SECRETS_MANAGER", "JOBLET_SERVER_PORT")
	}
}

// Every variable a bootstrap flag reads is one a settings file may set.
func TestSettingVarsCoverFlags(t *testing.T) {
	c := &cli{}
	cmd := c.bootstrapCmd()
	known := map[string]bool{}
	for _, s := range settingVars {
		for _, v := range s.vars {
			known[v] = true
		}
	}
	for _, name := range []string{"home", "server-address", "port", "listen-address", "public-address", "additional-names", "store", "prefix", "node-id"} {
		f := cmd.Flags().Lookup(name)
		if f == nil {
			t.Fatalf("no flag --%s", name)
		}
		_, env, ok := strings.Cut(f.Usage, "(env ")
		if !ok {
			continue
		}
		env, _, _ = strings.Cut(env, ")")
		env, _, _ = strings.Cut(env, ",")
		env, _, _ = strings.Cut(env, ";")
		if !known[strings.TrimSpace(env)] {
			t.Errorf("--%s reads %s, which settingVars lacks", name, env)
		}
	}
}

// The attacker review's repro: a settings file naming another node id and
// a balancer's names, given to a re-run on an installed node without
// --reconfigure, is refused naming both values, nothing written; with
// --reconfigure it applies and the added names are reported on stderr.
func TestSettingsFileCannotSilentlyChangeTheNode(t *testing.T) {
	vars := []string{"JOBLET_SERVER_ADDRESS", "JOBLET_LISTEN_ADDRESS", "JOBLET_SERVER_PORT", "JOBLET_ADDITIONAL_NAMES",
		"JOBLET_PUBLIC_ADDRESS", "JOBLET_NODE_ID", "JOBLET_METRICS_ADDRESS", "FORCE_REGENERATE", "JOBLET_KEY_TYPE"}
	clearVars(t, vars...)
	home := t.TempDir()
	if code, _, errs := runIn(t, "certs", "bootstrap", "--home", home, "--listen-address", "127.0.0.1",
		"--server-address", "127.0.0.1", "--port", "50073", "--node-id", "node-1"); code != 0 {
		t.Fatalf("bootstrap: exit %d: %s", code, errs)
	}
	cfgPath := filepath.Join(home, "config", "joblet-config.yml")
	before, _ := os.ReadFile(cfgPath)
	file := filepath.Join(t.TempDir(), "settings.test")
	os.WriteFile(file, []byte("JOBLET_NODE_ID=node-stolen\nJOBLET_ADDITIONAL_NAMES=balancer.example.com,10.9.9.9\n"), 0o644)
	code, _, errs := runIn(t, "certs", "bootstrap", "--home", home, "--settings", file)
	if code != 2 || !strings.Contains(errs, "from node-1 to node-stolen") || !strings.Contains(errs, "also carry balancer.example.com, 10.9.9.9") {
		t.Fatalf("settings changing the node id and names: exit %d: %s", code, errs)
	}
	if now, _ := os.ReadFile(cfgPath); string(now) != string(before) {
		t.Fatal("a refused re-run changed the config")
	}
	clearVars(t, vars...)
	code, _, errs = runIn(t, "certs", "bootstrap", "--home", home, "--settings", file, "--reconfigure", "--json")
	if code != 0 || !strings.Contains(errs, "now also carries balancer.example.com, 10.9.9.9") {
		t.Fatalf("--reconfigure: exit %d, stderr: %s", code, errs)
	}
	s, err := config.LoadServer(cfgPath)
	if err != nil || s.Server.NodeID != "node-stolen" {
		t.Fatalf("--reconfigure did not apply: %v %+v", err, s)
	}
	clearVars(t, vars...)
}

// A settings file sets only the listed settings: any other variable (one
// that would redirect the run's AWS or HTTP traffic) is refused naming its
// line and the list, nothing read into the environment. Every variable the
// packaged /etc/default/joblet documents is accepted.
func TestSettingsFileRefusesUnknownVariables(t *testing.T) {
	clearVars(t, "AWS_ENDPOINT_URL", "HTTPS_PROXY", "JOBLET_NODE_ID")
	file := filepath.Join(t.TempDir(), "settings")
	for _, v := range []string{"AWS_ENDPOINT_URL=http://127.0.0.1:1", "HTTPS_PROXY=http://127.0.0.1:1"} {
		os.WriteFile(file, []byte("JOBLET_NODE_ID=n1\n# c\n"+v+"\n"), 0o644)
		code, _, errs := runIn(t, "certs", "bootstrap", "--home", t.TempDir(), "--settings", file)
		name, _, _ := strings.Cut(v, "=")
		if code != 2 || !strings.Contains(errs, "line 3: "+name+" is not a joblet setting") || !strings.Contains(errs, "JOBLET_ADDITIONAL_NAMES") {
			t.Errorf("%s: exit %d: %s", v, code, errs)
		}
		if _, set := os.LookupEnv(name); set {
			t.Errorf("%s was read into the environment", name)
		}
		if _, set := os.LookupEnv("JOBLET_NODE_ID"); set {
			t.Errorf("a refused file was half applied")
		}
	}

	// The packaged file, every line uncommented.
	b, err := os.ReadFile(filepath.Join("..", "..", "packaging", "joblet.default"))
	if err != nil {
		t.Fatal(err)
	}
	lines := regexp.MustCompile(`(?m)^#([A-Z][A-Z0-9_]*)=.*$`).FindAllStringSubmatch(string(b), -1)
	if len(lines) < 15 {
		t.Fatalf("found %d settings in packaging/joblet.default", len(lines))
	}
	var body strings.Builder
	for _, l := range lines {
		body.WriteString(strings.TrimPrefix(l[0], "#") + "\n")
	}
	os.WriteFile(file, []byte(body.String()), 0o644)
	vals, err := config.ReadSettings(file, knownSettings())
	if err != nil {
		t.Fatalf("the packaged settings file is refused: %v", err)
	}
	if len(vals) != len(lines) {
		t.Fatalf("read %d of %d settings", len(vals), len(lines))
	}
}
