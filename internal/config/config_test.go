package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestServerRoundTrip(t *testing.T) {
	in := &Server{Version: "3.0", Server: Listen{Address: "::1", Port: 50051, NodeID: "n1",
		ServerAddress: "10.0.0.5", PublicAddress: "lb.example:443", AdditionalNames: []string{"n1.internal", "10.1.1.1"}},
		Security: Security{ServerCert: "C\n", ServerKey: "K\n", CACert: "A\nB\n"},
		Jobs:     Jobs{LogBufferBytes: 42, StopGracePeriod: "2s"}}
	b, err := in.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "c.yml")
	os.WriteFile(p, b, 0o600)
	out, err := LoadServer(p)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(out, in) {
		t.Fatalf("round trip: %+v != %+v", out, in)
	}
	if out.ListenAddr() != "[::1]:50051" {
		t.Errorf("listen addr %q", out.ListenAddr())
	}
}

func TestServerConfigErrors(t *testing.T) {
	dir := t.TempDir()
	cases := map[string]string{
		"":                                   "empty",
		"server: [":                          "invalid YAML",
		"server:\n  port: 0\n":               "not a TCP port",
		"server:\n  port: 1\nextra: 1\n":     "field extra not found",
		"server:\n  port: 1\nsecurity: {}\n": "security.",
	}
	for content, want := range cases {
		p := filepath.Join(dir, "c.yml")
		os.WriteFile(p, []byte(content), 0o600)
		_, err := LoadServer(p)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err %v, want %q", content, err, want)
		}
	}
	if _, err := LoadServer(filepath.Join(dir, "missing.yml")); err == nil || !strings.Contains(err.Error(), "joblet certs bootstrap") {
		t.Errorf("missing file: %v", err)
	}
}

func TestRnxRoundTripAndSelect(t *testing.T) {
	n := func(def bool) *Node { return &Node{Address: "h:1", Cert: "c", Key: "k", CA: "a", IsDefault: def} }
	in := &Rnx{Version: RnxVersion, Nodes: map[string]*Node{"default": n(false), "prod": n(true)}}
	b, _ := in.Marshal()
	out, err := ParseRnx(b)
	if err != nil {
		t.Fatal(err)
	}
	if name, _, _ := out.Select(""); name != "prod" {
		t.Errorf("isDefault should win over the name default: %q", name)
	}
	out.Nodes["prod"].IsDefault = false
	if name, _, _ := out.Select(""); name != "default" {
		t.Errorf("fallback %q", name)
	}
	if _, _, err := out.Select("nope"); err == nil || !strings.Contains(err.Error(), "[default prod]") {
		t.Errorf("unknown node: %v", err)
	}
	delete(out.Nodes, "default")
	if _, _, err := out.Select(""); err == nil {
		t.Error("no default and no name should fail")
	}
	for content, want := range map[string]string{
		"version: \"2.0\"\nnodes: {a: {address: x, cert: c, key: k, ca: a}}": "not supported",
		"version: \"3.0\"\nnodes: {}":                                        "no nodes",
		"version: \"3.0\"\nnodes: {a: {address: x}}":                         "needs address, cert, key and ca",
		"version: \"3.0\"\nnodes: {a: {adress: x}}":                          "field adress not found",
	} {
		if _, err := ParseRnx([]byte(content)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v", content, err)
		}
	}
}

func TestFindRnxOrder(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	t.Setenv("HOME", dir)
	t.Setenv("RNX_CONFIG", "")
	if p, _ := FindRnx("/explicit.yml"); p != "/explicit.yml" {
		t.Error(p)
	}
	os.MkdirAll(filepath.Join(dir, ".rnx"), 0o700)
	os.WriteFile(filepath.Join(dir, ".rnx", "rnx-config.yml"), []byte("x"), 0o600)
	if p, _ := FindRnx(""); p != filepath.Join(dir, ".rnx", "rnx-config.yml") {
		t.Errorf("home config: %q", p)
	}
	// The current directory is never looked in.
	os.WriteFile(filepath.Join(dir, "rnx-config.yml"), []byte("x"), 0o600)
	if p, _ := FindRnx(""); p != filepath.Join(dir, ".rnx", "rnx-config.yml") {
		t.Errorf("./rnx-config.yml was preferred to ~/.rnx: %q", p)
	}
	os.Remove(filepath.Join(dir, ".rnx", "rnx-config.yml"))
	_, err := FindRnx("")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, ".rnx", "rnx-config.yml")) ||
		!strings.Contains(err.Error(), "./rnx-config.yml is not read unless named: pass --config ./rnx-config.yml") {
		t.Errorf("with only ./rnx-config.yml: %v", err)
	}
	t.Setenv("RNX_CONFIG", "/env.yml")
	if p, _ := FindRnx(""); p != "/env.yml" {
		t.Errorf("RNX_CONFIG: %q", p)
	}
}

func BenchmarkParseRnx(b *testing.B) {
	n := &Node{Address: "h:1", Cert: strings.Repeat("C", 700), Key: strings.Repeat("K", 240), CA: strings.Repeat("A", 700)}
	in := &Rnx{Version: RnxVersion, Nodes: map[string]*Node{"default": n, "maintainer": n, "developer": n, "reader": n}}
	data, _ := in.Marshal()
	for b.Loop() {
		if _, err := ParseRnx(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkLoadServer(b *testing.B) {
	in := &Server{Version: "3.0", Server: Listen{Address: "0.0.0.0", Port: 50051, NodeID: "n"},
		Security: Security{ServerCert: strings.Repeat("C", 700), ServerKey: strings.Repeat("K", 240), CACert: strings.Repeat("A", 1400)}}
	data, _ := in.Marshal()
	p := filepath.Join(b.TempDir(), "c.yml")
	os.WriteFile(p, data, 0o600)
	for b.Loop() {
		if _, err := LoadServer(p); err != nil {
			b.Fatal(err)
		}
	}
}
