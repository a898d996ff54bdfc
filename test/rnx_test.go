package test

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

var startedLine = regexp.MustCompile(`job ([A-Za-z0-9_-]+) started on node [A-Za-z0-9_-]+; follow again with: rnx job log -f ([A-Za-z0-9_-]+)`)

// jobIDShape is a job ID: its node, then 12 hex digits (internal/jobid).
var jobIDShape = regexp.MustCompile(`^[A-Za-z0-9_-]+_[0-9a-f]{12}$`)

// The rnx CLI against a real node: --follow's exit code and job id, --json,
// stdout and stderr kept apart, argument quoting, the dropped-output
// marker, completion, and the issuer fingerprint in info.
func TestRnxCLI(t *testing.T) {
	_, rnx := harness.Bins(t)
	home, env := embeddedNode(t)

	r := harness.Run(t, env, rnx, "job", "run", "--follow", "--", "sh", "-c", "echo out; echo 'err out' >&2; exit 3")
	m := startedLine.FindStringSubmatch(r.Stderr)
	if r.Code != 3 || m == nil || m[1] != m[2] || r.Stdout != "out\n" || !strings.Contains(r.Stderr, "err out\n") ||
		!strings.Contains(r.Stderr, "job "+m[1]+" failed: exit code 3") {
		t.Fatalf("job run --follow of exit 3: %s", r)
	}
	id := m[1]
	if r := harness.Run(t, env, rnx, "job", "run", "-f", "sh", "-c", "echo hi"); r.Code != 0 || r.Stdout != "hi\n" {
		t.Fatalf("job run -f: %s", r)
	}
	if r := harness.Run(t, env, rnx, "job", "run", "-f", "sh", "-c", "kill -9 $$"); r.Code != 128+9 || !strings.Contains(r.Stderr, "killed by signal 9") {
		t.Fatalf("job killed by SIGKILL: %s", r)
	}

	var jobs []struct {
		ID        string   `json:"id"`
		Status    string   `json:"status"`
		ExitCode  *int     `json:"exitCode"`
		Command   string   `json:"command"`
		Args      []string `json:"args"`
		Started   string   `json:"started"`
		Ended     string   `json:"ended"`
		StartedBy string   `json:"startedBy"`
	}
	if err := json.Unmarshal([]byte(harness.MustRun(t, env, rnx, "job", "list", "--json").Stdout), &jobs); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, j := range jobs {
		if j.ID != id {
			continue
		}
		found = true
		_, errS := time.Parse(time.RFC3339, j.Started)
		_, errE := time.Parse(time.RFC3339, j.Ended)
		if j.Status != "FAILED" || j.ExitCode == nil || *j.ExitCode != 3 || j.Command != "sh" || len(j.Args) != 2 ||
			j.StartedBy != "admin" || errS != nil || errE != nil {
			t.Fatalf("job in list --json: %+v %v %v", j, errS, errE)
		}
	}
	if !found {
		t.Fatalf("job %s not in list --json: %+v", id, jobs)
	}
	var one map[string]any
	if err := json.Unmarshal([]byte(harness.MustRun(t, env, rnx, "job", "status", "--json", id).Stdout), &one); err != nil || one["id"] != id || one["status"] != "FAILED" {
		t.Fatalf("status --json: %v %v", one, err)
	}

	// job log: the job's stdout to stdout, its stderr to stderr.
	if r := harness.MustRun(t, env, rnx, "job", "log", id); r.Stdout != "out\n" || r.Stderr != "err out\n" {
		t.Fatalf("job log: %s", r)
	}
	// job list shell-quotes arguments, with the same time format as status.
	list := harness.MustRun(t, env, rnx, "job", "list").Stdout
	if !strings.Contains(list, `sh -c 'echo out; echo '\''err out'\'' >&2; exit 3'`) {
		t.Fatalf("list does not quote the arguments:\n%s", list)
	}
	status := harness.MustRun(t, env, rnx, "job", "status", id).Stdout
	started := regexp.MustCompile(`started:\s+(\S+)`).FindStringSubmatch(status)
	if started == nil || !strings.Contains(list, started[1]) || !strings.HasSuffix(started[1], "Z") {
		t.Fatalf("status and list disagree on the start time:\n%s\n%s", status, list)
	}

	// Output over the per-job cap (1 MiB): the tail is kept and the drop is
	// said on stderr, not silently cut.
	big := strings.TrimSpace(harness.MustRun(t, env, rnx, "job", "run", "sh", "-c", "head -c 1100000 /dev/zero | tr '\\0' a; echo; echo last line").Stdout)
	harness.MustRun(t, env, rnx, "job", "log", "-f", big)
	r = harness.MustRun(t, env, rnx, "job", "log", big)
	if len(r.Stdout) != 1<<20 || !strings.HasSuffix(r.Stdout, "a\nlast line\n") ||
		!strings.Contains(r.Stderr, "[joblet: earlier output dropped: the job wrote 51435 bytes more than the node keeps") {
		t.Fatalf("dropped output: stdout %d bytes, stderr %q", len(r.Stdout), r.Stderr)
	}
	if !strings.Contains(harness.MustRun(t, env, rnx, "job", "status", big).Stdout, "output:      truncated") {
		t.Fatal("status does not say the output was truncated")
	}

	// --json on the other commands.
	var ran struct{ ID string }
	if err := json.Unmarshal([]byte(harness.MustRun(t, env, rnx, "job", "run", "--json", "sleep", "30").Stdout), &ran); err != nil || !jobIDShape.MatchString(ran.ID) {
		t.Fatalf("run --json: %+v %v", ran, err)
	}
	var stopped map[string]any
	if err := json.Unmarshal([]byte(harness.MustRun(t, env, rnx, "job", "stop", "--json", ran.ID).Stdout), &stopped); err != nil || stopped["status"] != "STOPPED" {
		t.Fatalf("stop --json: %v %v", stopped, err)
	}
	var nodes []struct {
		Name      string `json:"name"`
		Address   string `json:"address"`
		IsDefault bool   `json:"isDefault"`
		Role      string `json:"role"`
	}
	if err := json.Unmarshal([]byte(harness.MustRun(t, env, rnx, "nodes", "--json").Stdout), &nodes); err != nil || len(nodes) < 4 {
		t.Fatalf("nodes --json: %+v %v", nodes, err)
	}
	for _, n := range nodes {
		if want := map[string]string{"default": "admin"}[n.Name]; n.Role != n.Name && n.Role != want {
			t.Errorf("nodes --json: entry %s has role %q", n.Name, n.Role)
		}
	}
	if out := harness.MustRun(t, env, rnx, "nodes").Stdout; !strings.Contains(out, "ROLE") || !regexp.MustCompile(`(?m)^reader\s+\S+\s+reader\s*$`).MatchString(out) {
		t.Errorf("nodes: no role column:\n%s", out)
	}
	// info shows the fingerprint of the CA that signed the server
	// certificate (docs/ROTATION.md relies on it).
	cfg, err := config.LoadRnx(filepath.Join(home, "config", "rnx-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	cas, err := pki.ParseCerts([]byte(cfg.Nodes["default"].CA))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cas[0].Raw)
	var info map[string]string
	if err := json.Unmarshal([]byte(harness.MustRun(t, env, rnx, "info", "--json").Stdout), &info); err != nil ||
		info["serverCertIssuerSha256"] != hex.EncodeToString(sum[:]) || info["role"] != "admin" || info["nodeId"] == "" {
		t.Fatalf("info --json: %v %v", info, err)
	}
	if out := harness.MustRun(t, env, rnx, "info").Stdout; !strings.Contains(out, "server certificate issuer sha256 "+hex.EncodeToString(sum[:])) {
		t.Fatalf("info:\n%s", out)
	}
	// A command that does not exist exits 127, one that cannot be run 126,
	// as in a shell and with docker run.
	for cmd, want := range map[string]int{"no-such-command-here": 127, "/etc/passwd": 126} {
		if r := harness.Run(t, env, rnx, "job", "run", "--follow", "--", cmd); r.Code != want {
			t.Errorf("job run --follow %s: exit %d, want %d: %s", cmd, r.Code, want, r.Stderr)
		}
	}
	// ... and when this client's own certificate expires.
	own, _ := pki.ParseLeaf([]byte(cfg.Nodes["default"].Cert))
	if want := own.NotAfter.UTC().Format(time.RFC3339); info["clientCertNotAfter"] != want ||
		!strings.Contains(harness.MustRun(t, env, rnx, "info").Stdout, "client certificate serial "+pki.SerialHex(own.SerialNumber)+", expires "+want) {
		t.Errorf("info does not show the client certificate's expiry %s: %v", want, info)
	}

	if r := harness.MustRun(t, env, rnx, "completion", "bash"); !strings.Contains(r.Stdout, "# bash completion V2 for rnx") || !strings.Contains(r.Stdout, "complete -o default -F __start_rnx rnx") {
		t.Fatalf("completion bash: %.300s", r.Stdout)
	}
	if r := harness.Run(t, env, rnx, "job", "run", "--nope", "true"); r.Code != 2 || !strings.Contains(r.Stderr, "Run 'rnx job run --help'") {
		t.Fatalf("unknown flag: %s", r)
	}
}

// followed starts `rnx job run --follow CMD...` and returns it once the job
// id is on its stderr.
// follower is an `rnx job run --follow` running in the background.
type follower struct {
	cmd    *exec.Cmd
	id     string
	pw     *io.PipeWriter
	done   chan struct{} // the stderr reader has read everything
	stderr bytes.Buffer  // written by the reader until done
}

func followed(t *testing.T, env []string, rnx string, args ...string) *follower {
	t.Helper()
	f := &follower{cmd: exec.Command(rnx, append([]string{"job", "run", "--follow", "--"}, args...)...), done: make(chan struct{})}
	f.cmd.Env = env
	pr, pw := io.Pipe()
	f.cmd.Stderr, f.pw = pw, pw
	if err := f.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.cmd.Process.Kill() })
	idc := make(chan string, 1)
	go func() {
		defer close(f.done)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := startedLine.FindStringSubmatch(sc.Text()); m != nil {
				idc <- m[1]
			}
			f.stderr.WriteString(sc.Text() + "\n")
		}
	}()
	select {
	case f.id = <-idc:
		return f
	case <-time.After(20 * time.Second):
		t.Fatal("no job id on stderr")
	}
	return nil
}

// wait returns rnx's exit code and everything it wrote on stderr.
func (f *follower) wait(t *testing.T) (int, string) {
	t.Helper()
	errc := make(chan error, 1)
	go func() { errc <- f.cmd.Wait() }()
	var err error
	select {
	case err = <-errc:
	case <-time.After(20 * time.Second):
		t.Fatal("rnx did not exit")
	}
	f.pw.Close() // Wait has copied all of stderr into the pipe
	<-f.done
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return ee.ExitCode(), f.stderr.String()
	case err != nil:
		t.Fatal(err)
	}
	return 0, f.stderr.String()
}

// Ctrl-C stops following, not the job; a stopped job's follower says so and
// exits 128+SIGTERM.
func TestRnxFollowInterruptAndStop(t *testing.T) {
	_, rnx := harness.Bins(t)
	_, env := embeddedNode(t)

	f := followed(t, env, rnx, "sleep", "30")
	f.cmd.Process.Signal(os.Interrupt)
	code, _ := f.wait(t)
	r := harness.MustRun(t, env, rnx, "job", "status", f.id)
	if code != 130 || !strings.Contains(r.Stdout, "RUNNING") {
		t.Fatalf("after Ctrl-C: exit %d, status:\n%s", code, r.Stdout)
	}

	f = followed(t, env, rnx, "sh", "-c", "echo ready; sleep 30")
	harness.MustRun(t, env, rnx, "job", "stop", f.id)
	if code, stderr := f.wait(t); code != 128+int(syscall.SIGTERM) || !strings.Contains(stderr, "job "+f.id+" was stopped") {
		t.Fatalf("follower of a stopped job: exit %d, stderr %q", code, stderr)
	}
}

// The standard gRPC health and reflection services, through grpcurl (a
// client nobody here wrote), with a reader's certificate; without a client
// certificate the handshake fails.
func TestGrpcurlHealthAndReflection(t *testing.T) {
	grpcurl := harness.Grpcurl(t)
	home, _ := embeddedNode(t)
	cfg, err := config.LoadRnx(filepath.Join(home, "config", "rnx-config-reader.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var node *config.Node
	for _, n := range cfg.Nodes {
		node = n
	}
	dir := t.TempDir()
	write := func(name, data string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	ca, cert, key := write("ca.pem", node.CA), write("cert.pem", node.Cert), write("key.pem", node.Key)
	tlsArgs := []string{"-cacert", ca, "-cert", cert, "-key", key, node.Address}

	r := harness.MustRun(t, harness.Env(), grpcurl, append(tlsArgs, "list")...)
	for _, svc := range []string{"joblet.v1.JobService", "joblet.v1.NodeService", "grpc.health.v1.Health"} {
		if !strings.Contains(r.Stdout, svc+"\n") {
			t.Fatalf("grpcurl list lacks %s: %s", svc, r)
		}
	}
	r = harness.MustRun(t, harness.Env(), grpcurl, append(tlsArgs, "grpc.health.v1.Health/Check")...)
	if !strings.Contains(r.Stdout, `"status": "SERVING"`) {
		t.Fatalf("health check: %s", r)
	}
	r = harness.MustRun(t, harness.Env(), grpcurl, append(tlsArgs[:len(tlsArgs)-1], "-d", `{"service":"joblet.v1.JobService"}`, node.Address, "grpc.health.v1.Health/Check")...)
	if !strings.Contains(r.Stdout, `"status": "SERVING"`) {
		t.Fatalf("health check of JobService: %s", r)
	}
	// A reader may not run jobs through grpcurl either: same authorization.
	r = harness.Run(t, harness.Env(), grpcurl, append(tlsArgs[:len(tlsArgs)-1], "-d", `{"command":"true"}`, node.Address, "joblet.v1.JobService/RunJob")...)
	if r.Code == 0 || !strings.Contains(r.Stderr, "PermissionDenied") {
		t.Fatalf("reader RunJob through grpcurl: %s", r)
	}
	r = harness.Run(t, harness.Env(), grpcurl, "-cacert", ca, node.Address, "grpc.health.v1.Health/Check")
	if r.Code == 0 || strings.Contains(r.Stdout, "SERVING") {
		t.Fatalf("health check without a client certificate succeeded: %s", r)
	}
}

// A node whose port another process holds exits at once, naming the address.
func TestServerFailsFastOnTakenPort(t *testing.T) {
	joblet, _ := harness.Bins(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	home := t.TempDir()
	env := harness.Env("JOBLET_HOME="+home, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1",
		"JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT="+strconv.Itoa(l.Addr().(*net.TCPAddr).Port))
	harness.MustRun(t, env, joblet, "certs", "bootstrap")
	start := time.Now()
	r := harness.Run(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	if r.Code == 0 || !strings.Contains(r.Stderr, "listen "+addr+": address already in use") || !strings.Contains(r.Stderr, "server.port") {
		t.Fatalf("server on a taken port: %s", r)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v to fail", d)
	}
}
