package test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/test/harness"
)

// The package under real systemd: a Debian root made by debootstrap (cached
// under rootCache), booted with systemd-nspawn, systemd as its PID 1. The
// built .deb is installed there and driven as an operator would, with
// systemctl; what systemd enforces on the running service and its jobs is
// read from inside (/proc/<MainPID>/status, the service's own mount
// namespace, a job's /proc/self).
//
// The container has a network of its own (loopback only), so the node
// serves on the packaged default [::]:50051 without meeting the host's
// ports, and reaches nothing but what the test forwards into it: moto, for
// the Secrets Manager part.
func TestSystemdPackage(t *testing.T) {
	heavy(t)
	for _, tool := range [][2]string{{"systemd-nspawn", "systemd-container"}, {"debootstrap", "debootstrap"},
		{"nsenter", "util-linux"}, {"dpkg-deb", "dpkg"}} {
		if _, err := exec.LookPath(tool[0]); err != nil {
			t.Fatalf("%s is missing: install the Debian package %s (scripts/test.sh does, as root)", tool[0], tool[1])
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("TestSystemdPackage boots a container with systemd-nspawn and needs root: run it as root, as CI does")
	}
	start := time.Now()
	dist := t.TempDir()
	const v1, v2 = "1.0.0", "1.0.1+test.2"
	deb1, _ := buildPackage(t, dist, v1)
	deb2, _ := buildPackage(t, dist, v2)
	root := debianRoot(t, debDepends(t, deb1))
	m := bootMachine(t, root, dist)
	t.Logf("packages built, root ready, container booted: %v", time.Since(start).Round(100*time.Millisecond))
	unitFile := readFile(t, repoFile("packaging", "joblet.service"))
	unitCfg := parseUnit(t, unitFile)

	// Install: the postinst creates the job user and tells what is next;
	// nothing starts.
	r := m.mustRun(t, "dpkg", "-i", "/mnt/dist/"+filepath.Base(deb1))
	if !strings.Contains(r.Stdout, "Setting up joblet ("+v1+")") || !strings.Contains(r.Stdout, "joblet: not configured yet") {
		t.Fatalf("dpkg -i: %s", r)
	}
	jobUser := strings.Split(m.mustRun(t, "getent", "passwd", "joblet-job").Stdout, ":")
	if len(jobUser) < 7 || jobUser[2] == "0" || strings.TrimSpace(jobUser[6]) != "/usr/sbin/nologin" {
		t.Fatalf("the job user joblet-job: %q", jobUser)
	}
	jobUID := jobUser[2]
	if got := m.mustRun(t, "systemctl", "show", "-P", "FragmentPath", "joblet").Stdout; strings.TrimSpace(got) != "/lib/systemd/system/joblet.service" {
		t.Fatalf("systemd loads joblet.service from %q", got)
	}
	if readFile(t, m.path("/lib/systemd/system/joblet.service")) != unitFile {
		t.Fatal("the installed unit is not packaging/joblet.service")
	}
	if s := m.run(t, "systemctl", "is-active", "joblet").Stdout; strings.TrimSpace(s) != "inactive" {
		t.Fatalf("after dpkg -i the service is %q, want inactive (the package starts nothing)", s)
	}

	// Started before bootstrap (the operator's first mistake), the service
	// fails at once, naming the missing config, and is retried (Restart=,
	// bounded by StartLimitBurst=) until stopped.
	m.run(t, "systemctl", "start", "joblet")
	harness.Eventually(t, 20*time.Second, "the service failing before bootstrap", func() error {
		sub := strings.TrimSpace(m.mustRun(t, "systemctl", "show", "-P", "SubState", "joblet").Stdout)
		j := m.mustRun(t, "journalctl", "-u", "joblet", "--no-pager", "-o", "cat").Stdout
		if (sub != "auto-restart" && sub != "failed") || !strings.Contains(j, "/opt/joblet/config/joblet-config.yml") || !strings.Contains(j, "joblet certs bootstrap") {
			return fmt.Errorf("state %s, journal:\n%s", sub, j)
		}
		return nil
	})
	m.mustRun(t, "systemctl", "stop", "joblet")

	// The operator's settings, bootstrap as INSTALL.md shows it, then the
	// service.
	m.appendSettings(t, "USE_SECRETS_MANAGER=false", "JOBLET_SERVER_ADDRESS=127.0.0.1")
	m.mustRun(t, "sh", "-c", "set -a; . /etc/default/joblet; set +a; joblet certs bootstrap")
	r = m.mustRun(t, "systemctl", "enable", "--now", "joblet")
	if !strings.Contains(r.Stderr, "multi-user.target.wants/joblet.service") {
		t.Fatalf("systemctl enable --now joblet: %s", r)
	}
	info := m.waitInfo(t, v1)
	if !strings.Contains(info, "address:   127.0.0.1:50051") || !strings.Contains(info, "role:      admin") ||
		!strings.Contains(info, "jobs:      full") {
		t.Fatalf("rnx info against the node systemd started:\n%s", info)
	}
	mainPID := m.mainPID(t)

	// What systemd enforces on the running service, seen from inside.
	m.checkHardening(t, mainPID, unitCfg)

	// A contained job: the job user, its own cgroups, no privileges; its
	// output through rnx job log.
	id := m.runJob(t, "id -u; grep -E '^(NoNewPrivs|CapEff):' /proc/self/status; echo oom_score_adj $(cat /proc/self/oom_score_adj); cat /proc/self/cgroup")
	m.waitJob(t, id, "COMPLETED")
	out := m.mustRun(t, "rnx", "job", "log", id).Stdout
	lines := strings.Split(out, "\n")
	if lines[0] != jobUID || !strings.Contains(out, "NoNewPrivs:\t1\n") || !strings.Contains(out, "CapEff:\t0000000000000000\n") || !strings.Contains(out, "oom_score_adj 0\n") {
		t.Fatalf("the job did not run as joblet-job (uid %s) without privileges:\n%s", jobUID, out)
	}
	checkJobCgroups(t, out, id)
	t.Logf("job %s, as systemd's joblet ran it:\n%s", id, out)

	// Reload with a job running: the CA is rotated in the node's embedded
	// store, and only `systemctl reload` makes the running node serve from
	// the new one; the job and the process carry on.
	sleeper := m.runJob(t, "sleep 600")
	m.waitJob(t, sleeper, "RUNNING")
	issuer := infoIssuer(t, info)
	m.mustRun(t, "sh", "-c", "set -a; . /etc/default/joblet; set +a; joblet certs rotate-ca begin && rnx config refresh && joblet certs rotate-ca promote")
	if got := infoIssuer(t, m.waitInfo(t, v1)); got != issuer {
		t.Fatalf("the node serves from CA %s before any reload (was %s)", got, issuer)
	}
	m.mustRun(t, "systemctl", "reload", "joblet")
	harness.Eventually(t, 20*time.Second, "a certificate from the new CA after systemctl reload", func() error {
		if got := infoIssuer(t, m.waitInfo(t, v1)); got == issuer {
			return errors.New("still the old CA's certificate")
		}
		return nil
	})
	if pid := m.mainPID(t); pid != mainPID {
		t.Fatalf("systemctl reload replaced the process: MainPID %d, was %d", pid, mainPID)
	}
	m.waitJob(t, sleeper, "RUNNING")
	if j := m.mustRun(t, "journalctl", "-u", "joblet", "--no-pager", "-o", "cat").Stdout; !strings.Contains(j, "SIGHUP: reloading") {
		t.Fatalf("the journal shows no reload:\n%s", j)
	}

	// Upgrade under the running node: the package restarts nothing; the
	// operator restarts when convenient and the new version serves the
	// same, byte-identical, configs and settings.
	home := snapshot(t, m.path("/opt/joblet"))
	settings := readFile(t, m.path("/etc/default/joblet"))
	r = m.mustRun(t, "dpkg", "-i", "/mnt/dist/"+filepath.Base(deb2))
	if !strings.Contains(r.Stdout, "Setting up joblet ("+v2+")") || !strings.Contains(r.Stdout, "the running service still runs the previous binary") {
		t.Fatalf("dpkg -i %s over a running node: %s", v2, r)
	}
	if pid := m.mainPID(t); pid != mainPID {
		t.Fatalf("the upgrade restarted the node: MainPID %d, was %d", pid, mainPID)
	}
	m.waitJob(t, sleeper, "RUNNING")
	m.waitInfo(t, v1)
	m.mustRun(t, "systemctl", "restart", "joblet")
	m.waitInfo(t, v2)
	sameFiles(t, "/opt/joblet after the upgrade and restart", home, snapshot(t, m.path("/opt/joblet")))
	if readFile(t, m.path("/etc/default/joblet")) != settings {
		t.Fatal("the upgrade changed /etc/default/joblet")
	}
	if s := m.mustRun(t, "systemctl", "is-enabled", "joblet").Stdout; strings.TrimSpace(s) != "enabled" {
		t.Fatalf("after the upgrade the service is %q, want enabled", s)
	}

	// Stop with a job running: the job, its cgroups and its work directory
	// are gone.
	sleeper = m.runJob(t, "sleep 600")
	m.waitJob(t, sleeper, "RUNNING")
	if len(m.jobProcs(t, jobUID)) == 0 {
		t.Fatal("no process of the job user while a job runs")
	}
	m.mustRun(t, "systemctl", "stop", "joblet")
	if s := m.run(t, "systemctl", "is-active", "joblet").Stdout; strings.TrimSpace(s) != "inactive" {
		t.Fatalf("after systemctl stop the service is %q", s)
	}
	if p := m.jobProcs(t, jobUID); len(p) > 0 {
		t.Fatalf("processes of the job user after systemctl stop: %v", p)
	}
	m.checkNoJobLeftovers(t)

	// Purge: the package's files, settings and $JOBLET_HOME go, and the
	// unit is disabled; the system user stays.
	r = m.mustRun(t, "dpkg", "--purge", "joblet")
	if !strings.Contains(r.Stdout, "joblet: purge: deleting /opt/joblet") {
		t.Fatalf("dpkg --purge: %s", r)
	}
	for _, p := range []string{"/opt/joblet", "/etc/default/joblet", "/lib/systemd/system/joblet.service", "/usr/bin/joblet",
		"/etc/systemd/system/multi-user.target.wants/joblet.service"} {
		if _, err := os.Lstat(m.path(p)); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("%s after purge: %v", p, err)
		}
	}
	m.mustRun(t, "getent", "passwd", "joblet-job")
	t.Logf("operator flow done: %v", time.Since(start).Round(100*time.Millisecond))

	// Secrets Manager: the fleet is made from the operator's machine (here,
	// the host) with `certs init`; the node in the container joins through
	// moto, forwarded to the container's loopback, and serves the client
	// config init wrote.
	moto := resetMoto(t)
	joblet, _ := harness.Bins(t)
	fleet := filepath.Join(t.TempDir(), "configs")
	aws := harness.AWSEnv(moto.URL)
	harness.MustRun(t, harness.Env(aws...), joblet, "certs", "init", "--use-secrets-manager", "true", "--prefix", "joblet-systemd",
		"--address", "127.0.0.1:50051", "--out", fleet)
	motoPort := forwardInto(t, m.leader, strings.TrimPrefix(moto.URL, "http://"))
	m.mustRun(t, "dpkg", "-i", "/mnt/dist/"+filepath.Base(deb2))
	// What an instance role and the instance give on EC2, written here.
	m.appendSettings(t, "USE_SECRETS_MANAGER=true", "SECRETS_PREFIX=joblet-systemd", "EC2_REGION=us-east-1", "AWS_REGION=us-east-1",
		"JOBLET_SERVER_ADDRESS=127.0.0.1", "AWS_ENDPOINT_URL_SECRETS_MANAGER=http://127.0.0.1:"+strconv.Itoa(motoPort),
		"AWS_ACCESS_KEY_ID=test", "AWS_SECRET_ACCESS_KEY=test", "AWS_EC2_METADATA_SERVICE_ENDPOINT="+harness.ClosedURL)
	m.mustRun(t, "sh", "-c", "set -a; . /etc/default/joblet; set +a; joblet certs bootstrap")
	if _, err := os.Stat(m.path("/opt/joblet/config/rnx-config.yml")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a joining node wrote a client config (it must hold no client key): %v", err)
	}
	m.mustRun(t, "systemctl", "enable", "--now", "joblet")
	if err := os.MkdirAll(m.path("/root/.rnx"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(m.path("/root/.rnx/rnx-config.yml"), []byte(readFile(t, filepath.Join(fleet, "rnx-config.yml"))), 0o600); err != nil {
		t.Fatal(err)
	}
	info = m.waitInfo(t, v2)
	if !strings.Contains(info, "role:      admin") {
		t.Fatalf("rnx info with the fleet's config against the joined node:\n%s", info)
	}
	id = m.runJob(t, "echo served by a node of the fleet")
	m.waitJob(t, id, "COMPLETED")
	if out := m.mustRun(t, "rnx", "job", "log", id).Stdout; out != "served by a node of the fleet\n" {
		t.Fatalf("a job on the joined node: %q", out)
	}
	m.checkHardening(t, m.mainPID(t), unitCfg)
	t.Logf("whole test: %v", time.Since(start).Round(100*time.Millisecond))
}

// checkHardening reads, from inside the container, what systemd applied to
// the service's process pid: its capabilities and no_new_privs, and its
// mount namespace (read-only /, writable /opt/joblet, a private /tmp and
// /dev, no /root).
func (m *machine) checkHardening(t *testing.T, pid int, unit map[string][]string) {
	t.Helper()
	p := strconv.Itoa(pid)
	_, mask := boundingSet(t, unit["CapabilityBoundingSet"])
	status := m.mustRun(t, "cat", "/proc/"+p+"/status").Stdout
	for _, w := range []string{"Name:\tjoblet\n", "Uid:\t0\t0\t0\t0\n", fmt.Sprintf("CapBnd:\t%016x\n", mask),
		fmt.Sprintf("CapEff:\t%016x\n", mask), "CapAmb:\t0000000000000000\n", "NoNewPrivs:\t1\n"} {
		if !strings.Contains(status, w) {
			t.Fatalf("the service's /proc/%d/status lacks %q:\n%s", pid, w, status)
		}
	}
	// systemd sets OOMScoreAdjust= when it may lower a score
	// (CAP_SYS_RESOURCE), and otherwise leaves it, as in a container
	// without that capability (this test's, when its host lacks it).
	want := strings.Join(unit["OOMScoreAdjust"], "")
	if st, _ := os.ReadFile("/proc/self/status"); !hasCap(string(st), 24) { // CAP_SYS_RESOURCE
		want = "0"
	}
	if adj := strings.TrimSpace(m.mustRun(t, "cat", "/proc/"+p+"/oom_score_adj").Stdout); adj != want {
		t.Fatalf("the service's oom_score_adj is %s, want %s (the unit says %v)", adj, want, unit["OOMScoreAdjust"])
	}
	seen := []string{}
	for _, l := range strings.Split(status, "\n") {
		if k, _, _ := strings.Cut(l, ":"); k == "Uid" || strings.HasPrefix(k, "Cap") || k == "NoNewPrivs" || k == "Seccomp" {
			seen = append(seen, l)
		}
	}
	// The mounts, in the service's own mount namespace.
	opts := func(path string) string {
		return strings.TrimSpace(m.mustRun(t, "findmnt", "-N", p, "-n", "-o", "FSTYPE,OPTIONS", "-T", path).Stdout)
	}
	for _, c := range [][2]string{{"/", " ro,"}, {"/usr", " ro,"}, {"/etc", " ro,"}, {"/opt/joblet", " rw,"}, {"/dev", "tmpfs "}} {
		o := opts(c[0])
		if !strings.Contains(o, c[1]) {
			t.Errorf("in the service's mount namespace %s is mounted %q, want %q", c[0], o, c[1])
		}
		if i := strings.Index(o, ","); i > 0 {
			o = o[:i]
		}
		seen = append(seen, fmt.Sprintf("findmnt -N MainPID -T %s: %s", c[0], o))
	}
	t.Logf("the service (MainPID %d), as systemd runs it:\n%s", pid, strings.Join(seen, "\n"))
	inService := func(script string) harness.Result {
		return m.run(t, "nsenter", "--target", p, "--mount", "--", "sh", "-c", script)
	}
	for _, dir := range []string{"/etc", "/usr/bin", "/var/lib"} {
		if r := inService("touch " + dir + "/joblet-probe"); r.Code == 0 || !strings.Contains(r.Stderr, "Read-only file system") {
			t.Errorf("the service could write %s: %s", dir, r)
		}
	}
	if r := inService("echo probe > /opt/joblet/.probe && rm /opt/joblet/.probe"); r.Code != 0 {
		t.Errorf("the service cannot write /opt/joblet: %s", r)
	}
	// PrivateTmp: the service's /tmp is its own directory; ProtectHome:
	// the machine's /root is not there.
	if root := strings.TrimSpace(m.mustRun(t, "findmnt", "-N", p, "-n", "-o", "FSROOT", "/tmp").Stdout); !strings.Contains(root, "/systemd-private-") || !strings.Contains(root, "-joblet.service-") {
		t.Errorf("the service's /tmp is %q, not a private one", root)
	}
	m.mustRun(t, "sh", "-c", "echo machine > /tmp/joblet-probe && mkdir -p /root/joblet-probe")
	if r := inService("test -e /tmp/joblet-probe"); r.Code == 0 {
		t.Error("the service sees the machine's /tmp")
	}
	if r := inService("ls -A /root"); strings.TrimSpace(r.Stdout) != "" {
		t.Errorf("the service sees the machine's /root: %s", r)
	}
	m.mustRun(t, "rm", "-rf", "/tmp/joblet-probe", "/root/joblet-probe")
	// PrivateDevices: pseudo devices only.
	allowed := map[string]bool{"null": true, "zero": true, "full": true, "random": true, "urandom": true, "tty": true, "pts": true,
		"ptmx": true, "shm": true, "mqueue": true, "hugepages": true, "log": true, "fd": true, "stdin": true, "stdout": true,
		"stderr": true, "char": true, "core": true}
	for _, d := range strings.Fields(inService("ls /dev").Stdout) {
		if !allowed[d] {
			t.Errorf("the service's /dev has %s (PrivateDevices=yes allows only pseudo devices)", d)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
}

// checkJobCgroups: the job's /proc/self/cgroup puts it in its own group
// (joblet-jobs/<id>) in the controllers that limit it: the v1 memory and
// pids hierarchies on a hybrid host, the unified one on a pure v2 host.
func checkJobCgroups(t *testing.T, out, id string) {
	t.Helper()
	own := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		parts := strings.SplitN(l, ":", 3)
		if len(parts) != 3 || !strings.HasSuffix(parts[2], "/joblet-jobs/"+id) {
			continue
		}
		for _, c := range strings.Split(parts[1], ",") {
			own[c] = true
		}
	}
	if !(own["memory"] && own["pids"]) && !own[""] {
		t.Fatalf("job %s is not in its own memory and pids cgroups (joblet-jobs/%s):\n%s", id, id, out)
	}
}

func infoIssuer(t *testing.T, info string) string {
	t.Helper()
	m := regexp.MustCompile(`server certificate issuer sha256 ([0-9a-f]{64})`).FindStringSubmatch(info)
	if m == nil {
		t.Fatalf("rnx info names no issuer:\n%s", info)
	}
	return m[1]
}

// hasCap reports whether a /proc/PID/status text's CapEff holds capability bit.
func hasCap(status string, bit uint) bool {
	for _, l := range strings.Split(status, "\n") {
		if v, ok := strings.CutPrefix(l, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && n&(1<<bit) != 0
		}
	}
	return false
}
