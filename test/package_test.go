package test

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// The packages, as operators get them: scripts/package.sh builds them (two
// versions, for the upgrade); their contents are checked with dpkg-deb and
// rpm; the documented on-prem and EC2 user data install the .deb with the
// real dpkg at the real paths, bootstrap, and the node serves as its unit
// says; upgrade, remove and purge treat $JOBLET_HOME as INSTALL.md promises.
//
// The machine is left as it was: everything after the build runs in a
// private mount namespace whose directories the package touches are
// overlays over the machine's own (see newOverlayNS). systemd is not PID 1
// here, so the unit is not started by systemd: the test runs its ExecStart
// with its EnvironmentFile, CapabilityBoundingSet and NoNewPrivileges
// applied through setpriv, and its ExecReload.
func TestPackage(t *testing.T) {
	heavy(t)
	for _, tool := range [][2]string{{"dpkg-deb", "dpkg"}, {"dpkg", "dpkg"}, {"rpm", "rpm"}, {"systemd-analyze", "systemd"},
		{"unshare", "util-linux"}, {"nsenter", "util-linux"}, {"setpriv", "util-linux"}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Fatalf("%s is missing: install the Debian package %s (scripts/test.sh does, as root)", tool[0], tool[1])
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("TestPackage installs the package (in a private mount namespace) and needs root: run it as root, as CI does")
	}
	dist := t.TempDir()
	const v1, v2 = "1.0.0", "1.0.1+test.2"
	deb1, rpm1 := buildPackage(t, dist, v1)
	deb2, _ := buildPackage(t, dist, v2)
	checkDeb(t, deb1, v1)
	checkRPM(t, rpm1, v1)

	ns := newOverlayNS(t, "/usr/bin", "/usr/share", "/usr/lib/systemd/system", "/etc", "/opt", "/var/lib/dpkg", "/var/log")
	// Whatever this machine has installed stays out of the test (removed
	// in the overlays only).
	ns.run(t, nil, "dpkg", "--purge", "joblet")
	ns.run(t, nil, "rm", "-rf", "/opt/joblet")
	ns.run(t, nil, "userdel", "joblet-job")

	// The on-prem user data, exactly as INSTALL.md shows it.
	script := checkDocumented(t, "onprem.sh")
	pki := filepath.Join(t.TempDir(), "pki")
	port := harness.FreePort(t)
	fake, calls := fakeSystemctl(t)
	r := ns.run(t, userDataEnv(t, fake, port, "JOBLET_PACKAGE="+deb1, "JOBLET_PKI="+pki, "JOBLET_SERVER_ADDRESS=127.0.0.1"), "bash", script)
	if r.Code != 0 || !strings.Contains(r.Stdout, "Setting up joblet ("+v1+")") {
		t.Fatalf("on-prem user data: %s", r)
	}
	if !strings.Contains(r.Stdout, "joblet certs bootstrap --settings /etc/default/joblet") {
		t.Errorf("the postinst message does not name the settings file for bootstrap: %s", r.Stdout)
	}
	if got := readFile(t, calls); got != "enable --now joblet\n" {
		t.Fatalf("the user data asked systemctl for %q, want \"enable --now joblet\"", got)
	}
	// The postinst made the job user (the service cannot write /etc).
	if u := strings.Split(ns.mustRun(t, nil, "getent", "passwd", "joblet-job").Stdout, ":"); len(u) < 7 || u[2] == "0" || u[5] != "/nonexistent" || strings.TrimSpace(u[6]) != "/usr/sbin/nologin" {
		t.Fatalf("the job user joblet-job: %q", u)
	}
	ns.mustRun(t, nil, "systemd-analyze", "verify", "--man=no", "/lib/systemd/system/joblet.service")
	if readFile(t, ns.path("/lib/systemd/system/joblet.service")) != readFile(t, repoFile("packaging", "joblet.service")) {
		t.Fatal("the installed unit is not packaging/joblet.service")
	}

	node := startUnit(t, ns, nil)
	info := waitInfo(t, ns, v1)
	if !strings.Contains(info, "address:   127.0.0.1:"+strconv.Itoa(port)) || !strings.Contains(info, "role:      admin") {
		t.Fatalf("rnx info against the installed node:\n%s", info)
	}
	if r := ns.run(t, rnxEnv(t), "/usr/bin/rnx", "job", "run", "--follow", "--", "sh", "-c", "echo from a packaged node"); r.Code != 0 || r.Stdout != "from a packaged node\n" {
		t.Fatalf("a job on the installed node: %s", r)
	}
	node.reload(t, ns)

	home := snapshot(t, ns.path("/opt/joblet"))
	store := snapshot(t, pki)
	settings := readFile(t, ns.path("/etc/default/joblet"))
	if _, ok := home["config/joblet-config.yml"]; !ok || len(store) == 0 {
		t.Fatalf("after bootstrap: /opt/joblet has %v, the store %d files", fileNames(home), len(store))
	}

	// Upgrade under the running node: no restart by the package; the node's
	// certificates and settings stay; the new binary serves them.
	r = ns.mustRun(t, nil, "dpkg", "-i", deb2)
	if v := ns.mustRun(t, nil, "dpkg-query", "-W", "-f=${Version}", "joblet").Stdout; v != v2 {
		t.Fatalf("installed version after the upgrade: %q, want %q", v, v2)
	}
	if !node.alive() {
		t.Fatalf("the upgrade stopped the running node:\n%s", node.p.Output())
	}
	node.stop(t)
	sameFiles(t, "/opt/joblet after the upgrade", home, snapshot(t, ns.path("/opt/joblet")))
	sameFiles(t, "the store after the upgrade", store, snapshot(t, pki))
	if readFile(t, ns.path("/etc/default/joblet")) != settings {
		t.Fatal("the upgrade changed /etc/default/joblet")
	}
	startUnit(t, ns, nil).stopAfter(t, func() { waitInfo(t, ns, v2) })

	// Remove keeps $JOBLET_HOME and the settings; purge deletes both, and
	// says so; the shared store is never the package's to delete.
	ns.mustRun(t, nil, "dpkg", "-r", "joblet")
	if _, err := os.Stat(ns.path("/usr/bin/joblet")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("/usr/bin/joblet after dpkg -r: %v", err)
	}
	sameFiles(t, "/opt/joblet after dpkg -r", home, snapshot(t, ns.path("/opt/joblet")))
	if readFile(t, ns.path("/etc/default/joblet")) != settings {
		t.Fatal("dpkg -r changed /etc/default/joblet")
	}
	r = ns.mustRun(t, nil, "dpkg", "--purge", "joblet")
	if !strings.Contains(r.Stdout, "joblet: purge: deleting /opt/joblet") {
		t.Fatalf("purge did not say it deletes /opt/joblet: %s", r)
	}
	for _, p := range []string{"/opt/joblet", "/etc/default/joblet"} {
		if _, err := os.Stat(ns.path(p)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after purge: %v", p, err)
		}
	}
	sameFiles(t, "the store after purge", store, snapshot(t, pki))

	// The EC2 user data, exactly as INSTALL.md shows it, with moto standing
	// in for Secrets Manager and the AWS settings an instance role gives.
	moto := resetMoto(t)
	script = checkDocumented(t, "ec2-secretsmanager.sh")
	port = harness.FreePort(t)
	fake, calls = fakeSystemctl(t)
	aws := harness.AWSEnv(moto.URL)
	r = ns.run(t, userDataEnv(t, fake, port, append(aws, "JOBLET_PACKAGE="+deb2, "JOBLET_SERVER_ADDRESS=127.0.0.1")...), "bash", script)
	if r.Code != 0 || !strings.Contains(r.Stdout, "✨ CA Certificate: Generated and stored in Secrets Manager") {
		t.Fatalf("EC2 user data: %s", r)
	}
	if got := readFile(t, calls); got != "enable --now joblet\n" {
		t.Fatalf("the user data asked systemctl for %q, want \"enable --now joblet\"", got)
	}
	checkStore(t, readStore(t, "joblet"), "joblet")
	startUnit(t, ns, aws).stopAfter(t, func() { waitInfo(t, ns, v2) })
	ns.mustRun(t, nil, "dpkg", "--purge", "joblet")
}

// buildPackage runs scripts/package.sh for version into dist.
func buildPackage(t *testing.T, dist, version string) (deb, rpm string) {
	t.Helper()
	start := time.Now()
	// Not harness.Run's 2 minutes: on a fresh machine the first build also
	// installs nfpm and compiles the cgo-free standard library.
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", repoFile("scripts", "package.sh"))
	cmd.Env = harness.Env("VERSION="+version, "DIST="+dist)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/package.sh VERSION=%s: %v\n%s", version, err, out)
	}
	t.Logf("scripts/package.sh VERSION=%s: %v", version, time.Since(start).Round(100*time.Millisecond))
	deb = filepath.Join(dist, fmt.Sprintf("joblet_%s_%s.deb", version, runtime.GOARCH))
	rpms, _ := filepath.Glob(filepath.Join(dist, "joblet-"+version+"-1.*.rpm"))
	if _, err := os.Stat(deb); err != nil || len(rpms) != 1 {
		t.Fatalf("package.sh made no %s or no one joblet-%s-1.*.rpm (%v): %v", filepath.Base(deb), version, rpms, err)
	}
	return deb, rpms[0]
}

// An entry the packages must hold: type and permissions as ls shows them,
// owned by root:root.
type pkgEntry struct{ path, mode, packager string }

var packaged = []pkgEntry{
	{"/usr/bin/joblet", "-rwxr-xr-x", ""},
	{"/usr/bin/rnx", "-rwxr-xr-x", ""},
	{"/lib/systemd/system/joblet.service", "-rw-r--r--", ""},
	{"/etc/default/joblet", "-rw-r--r--", ""},
	{"/usr/share/joblet/certs_gen_with_secretsmanager.sh", "-rwxr-xr-x", ""},
	{"/usr/share/joblet/certs_gen_embedded.sh", "-rwxr-xr-x", ""},
	{"/usr/share/doc/joblet/INSTALL.md", "-rw-r--r--", ""},
	{"/opt/joblet", "drwx------", ""},
	{"/opt/joblet/config", "drwx------", ""},
	{"/usr/share/bash-completion/completions/joblet", "-rw-r--r--", ""},
	{"/usr/share/bash-completion/completions/rnx", "-rw-r--r--", ""},
	{"/usr/share/fish/vendor_completions.d/joblet.fish", "-rw-r--r--", ""},
	{"/usr/share/fish/vendor_completions.d/rnx.fish", "-rw-r--r--", ""},
	{"/usr/share/zsh/vendor-completions/_joblet", "-rw-r--r--", "deb"},
	{"/usr/share/zsh/vendor-completions/_rnx", "-rw-r--r--", "deb"},
	{"/usr/share/zsh/site-functions/_joblet", "-rw-r--r--", "rpm"},
	{"/usr/share/zsh/site-functions/_rnx", "-rw-r--r--", "rpm"},
	{"/usr/share/man/man1/joblet.1.gz", "-rw-r--r--", ""},
	{"/usr/share/man/man1/rnx.1.gz", "-rw-r--r--", ""},
	{"/usr/share/man/man1/joblet-certs-bootstrap.1.gz", "-rw-r--r--", ""},
	{"/usr/share/man/man1/rnx-job-run.1.gz", "-rw-r--r--", ""},
}

// checkEntries compares a package's listing (path -> "mode owner/group")
// with packaged; other directories (parents such as /usr/bin) are allowed,
// other files are not.
func checkEntries(t *testing.T, what, packager string, got map[string]string) {
	t.Helper()
	for _, e := range packaged {
		if e.packager != "" && e.packager != packager {
			continue
		}
		if want := e.mode + " root/root"; got[e.path] != want {
			t.Errorf("%s: %s is %q, want %q", what, e.path, got[e.path], want)
		}
		delete(got, e.path)
	}
	for p, m := range got {
		// A man page per command: the list follows the commands.
		if strings.HasPrefix(p, "/usr/share/man/man1/") && strings.HasSuffix(p, ".1.gz") && m == "-rw-r--r-- root/root" {
			continue
		}
		if !strings.HasPrefix(m, "d") {
			t.Errorf("%s: unexpected file %s (%s): add it to the test's list, or remove it from packaging/nfpm.yaml", what, p, m)
		}
	}
}

func checkDeb(t *testing.T, deb, version string) {
	t.Helper()
	f := harness.MustRun(t, harness.Env(), "dpkg-deb", "-f", deb, "Package", "Version", "Architecture").Stdout
	if want := fmt.Sprintf("Package: joblet\nVersion: %s\nArchitecture: %s\n", version, runtime.GOARCH); f != want {
		t.Errorf("dpkg-deb -f: %q, want %q", f, want)
	}
	if c := harness.MustRun(t, harness.Env(), "dpkg-deb", "-I", deb, "conffiles").Stdout; strings.TrimSpace(c) != "/etc/default/joblet" {
		t.Errorf("conffiles: %q, want /etc/default/joblet only", c)
	}
	ctl := harness.MustRun(t, harness.Env(), "dpkg-deb", "-I", deb).Stdout
	for _, s := range []string{"postinst", "prerm", "postrm"} {
		if !strings.Contains(ctl, " "+s+" ") {
			t.Errorf("the .deb has no %s:\n%s", s, ctl)
		}
	}
	// -rwxr-xr-x root/root  21282978 2026-01-01 00:00 ./usr/bin/joblet
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(harness.MustRun(t, harness.Env(), "dpkg-deb", "-c", deb).Stdout), "\n") {
		f := strings.Fields(l)
		if len(f) < 6 {
			t.Fatalf("dpkg-deb -c: unexpected line %q", l)
		}
		got[strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")] = f[0] + " " + f[1]
	}
	delete(got, "")
	checkEntries(t, "the .deb", "deb", got)
	checkGeneratedDocs(t, deb)
}

func checkRPM(t *testing.T, rpm, version string) {
	t.Helper()
	if nv := harness.MustRun(t, harness.Env(), "rpm", "-qp", "--qf", "%{NAME} %{VERSION}", rpm).Stdout; nv != "joblet "+version {
		t.Errorf("rpm name and version: %q, want %q", nv, "joblet "+version)
	}
	if c := harness.MustRun(t, harness.Env(), "rpm", "-qp", "--configfiles", rpm).Stdout; strings.TrimSpace(c) != "/etc/default/joblet" {
		t.Errorf("rpm config files: %q, want /etc/default/joblet only", c)
	}
	scripts := harness.MustRun(t, harness.Env(), "rpm", "-qp", "--scripts", rpm).Stdout
	for _, s := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet"} {
		if !strings.Contains(scripts, s) {
			t.Errorf("the .rpm has no %s", s)
		}
	}
	// -rwxr-xr-x    1 root     root       21282978 Jan  1 00:00 /usr/bin/joblet
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(harness.MustRun(t, harness.Env(), "rpm", "-qlpv", rpm).Stdout), "\n") {
		f := strings.Fields(l)
		if len(f) < 9 {
			t.Fatalf("rpm -qlpv: unexpected line %q", l)
		}
		got[f[len(f)-1]] = f[0] + " " + f[2] + "/" + f[3]
	}
	checkEntries(t, "the .rpm", "rpm", got)
}

// checkDocumented returns packaging/userdata/NAME after checking that
// docs/INSTALL.md shows it verbatim: what the test runs is what operators
// copy.
func checkDocumented(t *testing.T, name string) string {
	t.Helper()
	path := repoFile("packaging", "userdata", name)
	if !strings.Contains(readFile(t, repoFile("docs", "INSTALL.md")), "```bash\n"+readFile(t, path)+"```\n") {
		t.Fatalf("docs/INSTALL.md does not show packaging/userdata/%s as it is: copy the script into its bash block", name)
	}
	return path
}

// fakeSystemctl is a systemctl that records its arguments: there is no
// systemd to talk to here.
func fakeSystemctl(t *testing.T) (dir, calls string) {
	t.Helper()
	dir = t.TempDir()
	calls = filepath.Join(dir, "calls")
	if err := os.WriteFile(calls, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sh := "#!/bin/sh\necho \"$*\" >> " + calls + "\n"
	if err := os.WriteFile(filepath.Join(dir, "systemctl"), []byte(sh), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir, calls
}

// userDataEnv is what cloud-init gives user data (root, a plain PATH), with
// the fake systemctl first and the test's inputs: a free port on loopback
// only, and never the real metadata service (harness.Env).
func userDataEnv(t *testing.T, fakeBin string, port int, extra ...string) []string {
	return harness.Env(append([]string{"PATH=" + fakeBin + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=" + t.TempDir(), "JOBLET_LISTEN_ADDRESS=127.0.0.1", "JOBLET_SERVER_PORT=" + strconv.Itoa(port)}, extra...)...)
}

// rnxEnv: no RNX_CONFIG and a HOME without ~/.rnx, so the installed rnx
// finds /opt/joblet/config/rnx-config.yml by itself.
func rnxEnv(t *testing.T) []string {
	return harness.Env("HOME=" + t.TempDir())
}

// waitInfo waits for the installed rnx info to answer from a node of version.
func waitInfo(t *testing.T, ns *overlayNS, version string) string {
	t.Helper()
	var out string
	harness.Eventually(t, 20*time.Second, "rnx info against the installed node", func() error {
		r := ns.run(t, rnxEnv(t), "/usr/bin/rnx", "info")
		if r.Code != 0 {
			return errors.New(r.String())
		}
		if out = r.Stdout; !strings.Contains(out, "version:   joblet "+version+" ") && !strings.Contains(out, "version:   "+version) {
			return fmt.Errorf("not version %s:\n%s", version, out)
		}
		return nil
	})
	return out
}

// overlayNS is a private mount namespace, held by a sleeping process, in
// which each directory given is an overlay over the machine's own: writes
// land in the test's temporary directories and vanish with the namespace.
type overlayNS struct{ pid int }

func newOverlayNS(t *testing.T, dirs ...string) *overlayNS {
	t.Helper()
	holder := exec.Command("unshare", "--mount", "--propagation", "private", "sleep", "infinity")
	if err := holder.Start(); err != nil {
		t.Fatalf("unshare: %v", err)
	}
	t.Cleanup(func() { holder.Process.Kill(); holder.Wait() })
	ns := &overlayNS{pid: holder.Process.Pid}
	self, _ := os.Readlink("/proc/self/ns/mnt")
	harness.Eventually(t, 5*time.Second, "unshare's mount namespace", func() error {
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", ns.pid)); err != nil || l == self {
			return fmt.Errorf("not yet (%v)", err)
		}
		return nil
	})
	tmp := t.TempDir()
	for i, d := range dirs {
		upper, work := filepath.Join(tmp, strconv.Itoa(i), "upper"), filepath.Join(tmp, strconv.Itoa(i), "work")
		for _, p := range []string{upper, work} {
			if err := os.MkdirAll(p, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		ns.mustRun(t, nil, "mount", "-t", "overlay", "overlay", "-o", "lowerdir="+d+",upperdir="+upper+",workdir="+work, d)
	}
	return ns
}

func (ns *overlayNS) args(args []string) []string {
	return append([]string{"--target", strconv.Itoa(ns.pid), "--mount", "--wd=/", "--"}, args...)
}

// run runs a command inside the namespace (env nil: harness.Env()).
func (ns *overlayNS) run(t *testing.T, env []string, args ...string) harness.Result {
	t.Helper()
	if env == nil {
		env = harness.Env()
	}
	return harness.Run(t, env, "nsenter", ns.args(args)...)
}

func (ns *overlayNS) mustRun(t *testing.T, env []string, args ...string) harness.Result {
	t.Helper()
	r := ns.run(t, env, args...)
	if r.Code != 0 {
		t.Fatalf("%s (in the test's mount namespace): %s", strings.Join(args, " "), r)
	}
	return r
}

// path is p as seen inside the namespace, readable from the test.
func (ns *overlayNS) path(p string) string { return fmt.Sprintf("/proc/%d/root%s", ns.pid, p) }

// unit is a node started from the installed unit file.
type unit struct {
	p          *harness.Proc
	pid        int
	execReload []string
}

// startUnit starts /lib/systemd/system/joblet.service as systemd would,
// as far as this machine allows: ExecStart with a service's PATH and the
// EnvironmentFile's variables (plus extra: what the machine would provide,
// such as an instance role), under the unit's CapabilityBoundingSet and
// NoNewPrivileges, checked on the running process.
func startUnit(t *testing.T, ns *overlayNS, extra []string) *unit {
	t.Helper()
	u := parseUnit(t, readFile(t, ns.path("/lib/systemd/system/joblet.service")))
	env := harness.Env("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
	for _, f := range u["EnvironmentFile"] {
		optional := strings.HasPrefix(f, "-")
		f = strings.TrimPrefix(f, "-")
		b, err := os.ReadFile(ns.path(f))
		if err != nil && !(optional && errors.Is(err, fs.ErrNotExist)) {
			t.Fatalf("EnvironmentFile %s: %v", f, err)
		}
		env = append(env, parseEnvFile(t, f, string(b))...)
	}
	env = append(env, extra...)
	exe := commandLine(t, "ExecStart", u["ExecStart"])
	caps, mask := boundingSet(t, u["CapabilityBoundingSet"])
	cmd := []string{"setpriv", "--inh-caps=-all", "--bounding-set=" + caps}
	if one(t, u, "NoNewPrivileges") == "yes" {
		cmd = append(cmd, "--no-new-privs")
	}
	p := harness.Start(t, env, "nsenter", ns.args(append(append(cmd, "--"), exe...))...)
	n := &unit{p: p, pid: p.Cmd.Process.Pid, execReload: commandLine(t, "ExecReload", u["ExecReload"])}
	// nsenter and setpriv exec, never fork: the pid is the node's.
	harness.Eventually(t, 5*time.Second, "the node process", func() error {
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", n.pid))
		if err != nil {
			return err
		}
		want := []string{"Name:\tjoblet\n", fmt.Sprintf("CapBnd:\t%016x\n", mask), fmt.Sprintf("CapEff:\t%016x\n", mask)}
		if one(t, u, "NoNewPrivileges") == "yes" {
			want = append(want, "NoNewPrivs:\t1\n")
		}
		for _, w := range want {
			if !strings.Contains(string(status), w) {
				return fmt.Errorf("lacks %q:\n%s", w, status)
			}
		}
		return nil
	})
	return n
}

// reload runs the unit's ExecReload with $MAINPID, as systemctl reload
// does, and waits for the node to say it reloaded.
func (n *unit) reload(t *testing.T, ns *overlayNS) {
	t.Helper()
	var args []string
	for _, a := range n.execReload {
		args = append(args, strings.ReplaceAll(a, "$MAINPID", strconv.Itoa(n.pid)))
	}
	ns.mustRun(t, nil, args...)
	harness.Eventually(t, 10*time.Second, "the node's reload after ExecReload", func() error {
		if !strings.Contains(n.p.Output(), "SIGHUP: reloading") {
			return errors.New("no \"SIGHUP: reloading\" in its log")
		}
		return nil
	})
	waitInfo(t, ns, "")
}

func (n *unit) alive() bool { return syscall.Kill(n.pid, 0) == nil }

// stop sends SIGTERM, as systemctl stop does (KillMode=mixed), and waits.
func (n *unit) stop(t *testing.T) {
	t.Helper()
	syscall.Kill(n.pid, syscall.SIGTERM)
	harness.Eventually(t, 15*time.Second, "the node's exit on SIGTERM", func() error {
		if n.alive() {
			return errors.New("still running")
		}
		return nil
	})
}

func (n *unit) stopAfter(t *testing.T, f func()) {
	t.Helper()
	defer n.stop(t)
	f()
}

// parseUnit reads a unit file: key -> values in order (sections merged;
// joblet.service has no key in two sections). Continuation lines joined.
func parseUnit(t *testing.T, text string) map[string][]string {
	t.Helper()
	u := map[string][]string{}
	text = strings.ReplaceAll(text, "\\\n", " ")
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || l[0] == '#' || l[0] == ';' || l[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok {
			t.Fatalf("joblet.service: cannot read line %q", l)
		}
		u[k] = append(u[k], v)
	}
	return u
}

func one(t *testing.T, u map[string][]string, key string) string {
	t.Helper()
	if len(u[key]) != 1 {
		t.Fatalf("joblet.service: want one %s=, have %q", key, u[key])
	}
	return u[key][0]
}

// commandLine splits an Exec line. The unit's lines use no quoting,
// specifiers or prefixes; anything else is refused rather than misread.
func commandLine(t *testing.T, key string, v []string) []string {
	t.Helper()
	if len(v) != 1 || strings.ContainsAny(v[0], "\"'%\\") || strings.ContainsAny(v[0][:1], "-@+!:|") {
		t.Fatalf("joblet.service: %s=%q: this test reads one plain command line; teach it the syntax you used", key, v)
	}
	return strings.Fields(v[0])
}

// parseEnvFile reads an EnvironmentFile: VAR=value lines, comments, values
// optionally in double or single quotes.
func parseEnvFile(t *testing.T, name, text string) []string {
	t.Helper()
	var env []string
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if l == "" || l[0] == '#' || l[0] == ';' {
			continue
		}
		k, v, ok := strings.Cut(l, "=")
		if !ok || strings.ContainsAny(k, " \t") {
			t.Fatalf("%s: cannot read line %q", name, l)
		}
		if len(v) >= 2 && (v[0] == '"' || v[0] == '\'') && v[len(v)-1] == v[0] {
			v = v[1 : len(v)-1]
		}
		env = append(env, k+"="+v)
	}
	return env
}

// capNumbers are the capabilities the unit may name (linux/capability.h).
var capNumbers = map[string]uint{
	"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_DAC_READ_SEARCH": 2, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
	"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13,
	"CAP_SYS_CHROOT": 18, "CAP_SYS_PTRACE": 19, "CAP_SYS_ADMIN": 21, "CAP_SYS_RESOURCE": 24, "CAP_MKNOD": 27,
}

// boundingSet turns CapabilityBoundingSet into setpriv's --bounding-set
// and the mask /proc/PID/status shows.
func boundingSet(t *testing.T, v []string) (string, uint64) {
	t.Helper()
	if len(v) != 1 {
		t.Fatalf("joblet.service: want one CapabilityBoundingSet=, have %q", v)
	}
	arg, mask := "-all", uint64(0)
	for _, c := range strings.Fields(v[0]) {
		n, ok := capNumbers[c]
		if !ok {
			t.Fatalf("joblet.service: CapabilityBoundingSet names %s, which this test does not know: add it to capNumbers", c)
		}
		arg += ",+" + strings.ToLower(strings.TrimPrefix(c, "CAP_"))
		mask |= 1 << n
	}
	return arg, mask
}

// snapshot maps every file under dir to its mode and content hash; the
// jobs' work directories (jobs/) come and go with the jobs, they are not
// the node's state.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(dir, "jobs") {
			return filepath.SkipDir
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h := ""
		if info.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			s := sha256.Sum256(b)
			h = hex.EncodeToString(s[:])
		}
		files[rel] = info.Mode().String() + " " + h
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot of %s: %v", dir, err)
	}
	return files
}

func sameFiles(t *testing.T, what string, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		if after[p] != b {
			t.Errorf("%s: %s was %q, is %q", what, p, b, after[p])
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s: %s is new", what, p)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

func fileNames(m map[string]string) []string {
	var k []string
	for p := range m {
		k = append(k, p)
	}
	sort.Strings(k)
	return k
}

func repoFile(parts ...string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(append([]string{filepath.Dir(file), ".."}, parts...)...)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkGeneratedDocs unpacks the .deb and checks what the CLI library
// generated: completion scripts bash, zsh and fish load, and man pages that
// show the commands' real flags.
func checkGeneratedDocs(t *testing.T, deb string) {
	t.Helper()
	dir := t.TempDir()
	harness.MustRun(t, harness.Env(), "dpkg-deb", "-x", deb, dir)
	for _, cmd := range []string{"joblet", "rnx"} {
		bashFile := filepath.Join(dir, "usr/share/bash-completion/completions", cmd)
		if r := harness.Run(t, harness.Env(), "bash", "-c", "source "+bashFile+" && complete -p "+cmd); r.Code != 0 || !strings.Contains(r.Stdout, cmd) {
			t.Errorf("bash completion for %s does not load: %s", cmd, r)
		}
		if z := readFile(t, filepath.Join(dir, "usr/share/zsh/vendor-completions", "_"+cmd)); !strings.HasPrefix(z, "#compdef "+cmd) {
			t.Errorf("zsh completion for %s starts %.40q", cmd, z)
		}
		if f := readFile(t, filepath.Join(dir, "usr/share/fish/vendor_completions.d", cmd+".fish")); !strings.Contains(f, "complete -c "+cmd) {
			t.Errorf("fish completion for %s lacks complete -c %s", cmd, cmd)
		}
	}
	for page, flags := range map[string][]string{
		"joblet-certs-bootstrap.1.gz": {"--settings", "--reconfigure", "JOBLET_LISTEN_ADDRESS"},
		"rnx-job-run.1.gz":            {"--follow", "--max-memory"},
	} {
		r := harness.MustRun(t, harness.Env(), "sh", "-c", "gzip -dc "+filepath.Join(dir, "usr/share/man/man1", page))
		for _, f := range flags {
			if !strings.Contains(strings.ReplaceAll(r.Stdout, `\-`, "-"), f) {
				t.Errorf("man page %s does not document %s", page, f)
			}
		}
	}
}

// Every setting the README's bootstrap table names has its line in
// packaging/joblet.default (the package's /etc/default/joblet), commented
// or not, except FORCE_REGENERATE, which the file must not set.
func TestSettingsFileHasEverySetting(t *testing.T) {
	readme := readFile(t, repoFile("README.md"))
	_, table, _ := strings.Cut(readme, "| flag | environment | default |")
	table, _, _ = strings.Cut(table, "\n\n")
	vars := regexp.MustCompile("`((?:JOBLET|AWS|EC2|USE|SECRETS)_[A-Z_]+)`").FindAllStringSubmatch(table, -1)
	if len(vars) < 10 {
		t.Fatalf("found %d variables in README.md's bootstrap table", len(vars))
	}
	file := readFile(t, repoFile("packaging", "joblet.default"))
	for _, v := range append(vars, []string{"", "JOBLET_TIMEOUT"}) {
		name := v[1]
		if name == "FORCE_REGENERATE" {
			continue
		}
		if !regexp.MustCompile(`(?m)^#?` + name + `=`).MatchString(file) {
			t.Errorf("packaging/joblet.default has no line for %s", name)
		}
	}
}
