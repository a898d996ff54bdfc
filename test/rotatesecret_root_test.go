package test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	sm "github.com/aws/aws-sdk-go-v2/service/secretsmanager"
	smtypes "github.com/aws/aws-sdk-go-v2/service/secretsmanager/types"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// rootRunner drives RotateSecret runs on <prefix>/ca-key, each run
// Secrets Manager's four steps calling `joblet certs rotate-secret` under
// the Lambda Runtime Interface Emulator.
type rootRunner struct {
	t     *testing.T
	c     *sm.Client
	fn    *harness.Lambda
	fnARN string
	opEnv []string
	n     int // runs so far: each new run gets a new token
	// waits are the reasons of the attempts until retried.
	waits []string
}

const rootKeyName, rootCertName = "joblet/ca-key", "joblet/ca-cert"

// token is a new ClientRequestToken, a UUID as Secrets Manager makes them.
func (r *rootRunner) token() string {
	r.n++
	return fmt.Sprintf("5a0c7e2d-%04d-4b1f-9c3e-%012d", r.n, time.Now().UnixNano()%1e12)
}

// once is one RotateSecret of ca-key with token: the run went ahead
// (the version lost AWSPENDING), or the function logged that it waits
// for the fleet (the version keeps AWSPENDING; the reason is returned).
// Any other outcome fails the test.
func (r *rootRunner) once(token string) (done bool, why string) {
	t := r.t
	t.Helper()
	logBefore := len(r.fn.Proc.Output())
	verBefore, keyBefore := currentVersion(t, r.c, rootKeyName)
	if err := rotateBy(r.c, rootKeyName, token, r.fnARN, "rate(90 days)"); err != nil {
		t.Fatalf("RotateSecret %s (token %s): %v", rootKeyName, token, err)
	}
	stages := stagesOf(t, r.c, rootKeyName)[token]
	if slices.Contains(stages, "AWSCURRENT") {
		t.Fatalf("the run's version %s is current: a run's version never is", token)
	}
	if !slices.Contains(stages, "AWSPENDING") {
		return true, ""
	}
	out := r.fn.Proc.Output()[logBefore:]
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, token) && strings.Contains(l, "rotation step failed") {
			t.Fatalf("the run %s failed (not a wait):\n%s", token, l)
		}
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, token) && strings.Contains(l, "joblet root rotation waits for the fleet") {
			why = l
		}
	}
	if why == "" {
		t.Fatalf("the run %s kept AWSPENDING (labels %v) and the function logged no wait:\n%s", token, stages, out)
	}
	if v, k := currentVersion(t, r.c, rootKeyName); v != verBefore || k != keyBefore {
		t.Fatalf("a run that waits for the fleet moved %s's current version from %s to %s", rootKeyName, verBefore, v)
	}
	return false, why
}

// until runs token again (Secrets Manager's retry of the same run) until
// it goes ahead, within bound; it returns how many attempts it took.
func (r *rootRunner) until(what, token string, bound time.Duration) int {
	r.t.Helper()
	end := time.Now().Add(bound)
	last := ""
	for n := 1; ; n++ {
		done, why := r.once(token)
		if done {
			return n
		}
		if time.Now().After(end) {
			r.t.Fatalf("%s: the run %s still waits after %d attempts in %s: %s", what, token, n, bound, why)
		}
		if i := strings.Index(why, "why="); i >= 0 {
			why = why[i:]
		}
		if n == 1 || why != last {
			r.t.Logf("%s, attempt %d waits: %s", what, n, why)
		}
		last = why
		r.waits = append(r.waits, what+": "+why)
		time.Sleep(500 * time.Millisecond)
	}
}

// phase checks the fleet's phase after a run and returns its status.
func (r *rootRunner) phase(want string) rotStatus {
	r.t.Helper()
	s := rotationStatus(r.t, r.opEnv)
	if s.Phase != want {
		r.t.Fatalf("the fleet is %s, want %s", s.Phase, want)
	}
	return s
}

// currentRoot checks that ca-key's AWSCURRENT holds the key of ca-cert's
// current certificate, and returns that root's fingerprint and the key's
// version.
func (r *rootRunner) currentRoot() (fingerprint, keyVersion string) {
	t := r.t
	t.Helper()
	kv, keyPEM := currentVersion(t, r.c, rootKeyName)
	_, certPEM := currentVersion(t, r.c, rootCertName)
	cert, err := pki.ParseCert([]byte(certPEM))
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.ParseKey([]byte(keyPEM))
	if err != nil {
		t.Fatalf("%s's AWSCURRENT holds no key: %v", rootKeyName, err)
	}
	if err := pki.MatchesKey(cert, key); err != nil {
		t.Fatalf("%s's AWSCURRENT is not the key of %s's current root: %v", rootKeyName, rootCertName, err)
	}
	return pki.Fingerprint(cert), kv
}

// Three root rotations in a row by Secrets Manager's rotation engine
// (moto's, as the launcher corrects it): each one three RotateSecret runs
// on joblet/ca-key (begin, promote, finish), the function under the Lambda
// Runtime Interface Emulator asking 2 nodes behind HAProxy (JOBLET_NODES,
// refresh every second) whether the fleet is ready, a run that waits
// retried with its token as Secrets Manager retries it. Two clients under
// load: a config never refreshed and one refreshed once per rotation
// (right after its begin run). The contract of docs/ROTATION.md holds:
//
//   - the never-refreshed config works through the first rotation's begin
//     and promote (0 failed requests); while it runs, the finish run waits
//     (its clients are the old root's), ca-key's current version unchanged;
//     once it stops and the client window passes, the same run finishes,
//     and every node refuses that config;
//   - the config refreshed once per rotation works through all three
//     (0 failed requests);
//   - after each finish ca-key's AWSCURRENT is the new root's key, and the
//     next begin run goes ahead (Secrets Manager sees no rotation in
//     progress).
func TestRotateSecretRootThreeRotations(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	start := time.Now()
	joblet, rnx := harness.Bins(t)
	f := startRotatorFleet(t, joblet) // the root's key in the store
	lb, opEnv, nodes, addrs := f.lb, f.opEnv, f.nodes, f.addrs
	orig, err := os.ReadFile(f.cfg)
	if err != nil {
		t.Fatal(err)
	}
	copyCfg := func(name string) string {
		p := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(p, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	never, perRotation := copyCfg("never.yml"), copyCfg("once-per-rotation.yml")

	const window = 2 * time.Second
	fn, fnARN := startRotator(t, joblet, "AWS_LAMBDA_FUNCTION_TIMEOUT=60", "JOBLET_NODES="+strings.Join(addrs, ","), "JOBLET_CLIENT_WINDOW="+window.String())
	r := &rootRunner{t: t, c: smClient(moto.URL), fn: fn, fnARN: fnARN, opEnv: opEnv}

	every := 60 * time.Millisecond
	neverLoop, perLoop := startLoop(t, never, every), startLoop(t, perRotation, every)
	refresh := func(cfg string) {
		harness.MustRun(t, harness.Env(append(opEnv, "RNX_CONFIG="+cfg)...), rnx, "config", "refresh")
	}
	const bound = 30 * time.Second
	var attempts []string
	for i := 1; i <= 3; i++ {
		oldRoot, oldKeyVersion := r.currentRoot()
		r.phase("stable")

		// Begin: goes ahead at once (after a finish too: no rotation of
		// Secrets Manager's is left in progress).
		if done, why := r.once(r.token()); !done {
			t.Fatalf("rotation %d: the begin run waits: %s", i, why)
		}
		if s := r.phase("begun"); s.Current.Sha256 != oldRoot {
			t.Fatalf("rotation %d: the begin run changed the current root", i)
		}
		refresh(perRotation)

		// Promote: once every node trusts the new root.
		pa := r.until(fmt.Sprintf("rotation %d, promote", i), r.token(), bound)
		newRoot := r.phase("promoted").Current.Sha256
		if newRoot == oldRoot {
			t.Fatalf("rotation %d: the promote run left the root current", i)
		}

		// Finish: once every node serves from the new root and none saw a
		// client of the old one within the window.
		finish := r.token()
		fa := 0
		if i == 1 {
			time.Sleep(3 * time.Second) // the never-refreshed client on the promoted fleet (logLoop wants 50 requests at least)
			// The never-refreshed client still runs: the run waits for it
			// (retried while the nodes move onto the new root, until that
			// client is the reason).
			end := time.Now().Add(bound)
			for {
				fa++
				done, why := r.once(finish)
				if done {
					t.Fatalf("the first finish run went ahead while a client of the old root ran")
				}
				if strings.Contains(why, "clients still present certificates of the outgoing CA") {
					t.Logf("the first finish run, while the never-refreshed client runs: %s", why)
					reliability.Record(t, "rotation", "a scheduled root finish run (RotateSecret on ca-key) while a client still presents an old-root certificate",
						"waits: AWSPENDING kept, ca-key's current version unchanged, the function logs \"joblet root rotation waits for the fleet\"")
					break
				}
				if time.Now().After(end) {
					t.Fatalf("the first finish run never waited for the old root's client: %s", why)
				}
				time.Sleep(500 * time.Millisecond)
			}
			r.phase("promoted")
			total, failed, rate, errs := neverLoop.finish()
			logLoop(t, "never refreshed, through the first scheduled root rotation's begin and promote runs", total, failed, rate, errs)
			time.Sleep(window + time.Second)
		}
		fa += r.until(fmt.Sprintf("rotation %d, finish", i), finish, bound)
		s := r.phase("stable")
		if s.Current.Sha256 != newRoot || len(s.Trusted) != 1 {
			t.Fatalf("rotation %d: after the finish run the root is %s, trusted %d, want %s alone", i, s.Current.Sha256, len(s.Trusted), newRoot)
		}
		root, keyVersion := r.currentRoot()
		if root != newRoot || keyVersion == oldKeyVersion {
			t.Fatalf("rotation %d: %s's AWSCURRENT (version %s) is the key of root %s, want the new root %s", i, rootKeyName, keyVersion, root, newRoot)
		}
		attempts = append(attempts, fmt.Sprintf("rotation %d: begin 1, promote %d, finish %d attempts", i, pa, fa))

		if i == 1 {
			// The never-refreshed config is refused by every node.
			for _, n := range nodes {
				direct := directConfig(t, never, lb, n.addr)
				harness.Eventually(t, 10*time.Second, "node "+n.addr+" refusing the never-refreshed config", func() error {
					if err := oneRequest(direct); err == nil {
						return errors.New("accepted")
					}
					return nil
				})
			}
			reliability.Record(t, "rotation", "a config made before a scheduled root rotation, never refreshed, after its finish run", "refused by every node")
		}
	}
	time.Sleep(2 * time.Second) // traffic on the rotated fleet
	total, failed, rate, errs := perLoop.finish()
	// And the schedule goes on: a fourth rotation's begin run goes ahead.
	if done, why := r.once(r.token()); !done {
		t.Fatalf("the begin run after the third rotation waits: %s", why)
	}
	r.phase("begun")
	logLoop(t, "refreshed once per rotation (after each begin run), through three scheduled root rotations", total, failed, rate, errs)
	t.Logf("runs: %s; %s", strings.Join(attempts, "; "), time.Since(start).Round(time.Second))
	// Once the never-refreshed client stopped, no run waited for a client
	// of an outgoing root: not for the function's own calls either (it
	// asks the nodes with the reader's certificate as a refresh hands it
	// out, the new root's from the begin run on).
	for _, w := range r.waits {
		if strings.Contains(w, "clients still present certificates of the outgoing CA") {
			t.Errorf("a run waited for an old root's client with no such client running: %s", w)
		}
	}
	// Every run's finishSecret handed both nodes the new trust state.
	pushes := 0
	for _, l := range strings.Split(fn.Proc.Output(), "\n") {
		if strings.Contains(l, "joblet rotation pushed the trust state") {
			pushes++
			if !strings.Contains(l, " took=2 ") {
				t.Errorf("a push missed nodes: %s", l)
			}
		}
	}
	if pushes < 9 {
		t.Errorf("%d pushes of the trust state logged, want one per run (9)", pushes)
	}
	reliability.Record(t, "rotation", "three root rotations in a row by Secrets Manager (RotateSecret on ca-key: begin, promote, finish runs under the Lambda RIE), 2 nodes behind HAProxy",
		fmt.Sprintf("once-per-rotation client: %d requests at %.0f/s, %d failed; %s", total, rate, failed, strings.Join(attempts, "; ")))
}

// A root rotation begun by an earlier joblet, which labelled the staged
// versions AWSPENDING (Secrets Manager's label for a rotation of its own
// in progress): Secrets Manager refuses RotateSecret on ca-key (the
// schedule is stuck); `joblet certs rotate-ca status` moves the labels to
// JOBLET_PENDING; the next RotateSecret run on ca-key then promotes.
func TestRotateSecretRootAfterLegacyBegin(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	ctx := context.Background()
	joblet, _ := harness.Bins(t)
	opEnv, out, n := startOneNode(t, joblet)
	cfg := filepath.Join(out, "rnx-config.yml")
	harness.Eventually(t, 15*time.Second, "node up", func() error { return oneRequest(cfg) })
	fn, fnARN := startRotator(t, joblet, "AWS_LAMBDA_FUNCTION_TIMEOUT=60", "JOBLET_NODES="+n.addr, "JOBLET_CLIENT_WINDOW=2s")
	r := &rootRunner{t: t, c: smClient(moto.URL), fn: fn, fnARN: fnARN, opEnv: opEnv}
	oldRoot, _ := r.currentRoot()

	harness.MustRun(t, opEnv, joblet, "certs", "rotate-ca", "begin")
	r.phase("begun")
	// As an earlier joblet left it: the staged versions labelled AWSPENDING.
	legacy := map[string]string{} // secret -> version
	list, err := r.c.ListSecrets(ctx, &sm.ListSecretsInput{Filters: []smtypes.Filter{{Key: smtypes.FilterNameStringTypeName, Values: []string{"joblet/"}}}, MaxResults: aws.Int32(100)})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range list.SecretList {
		for id, stages := range s.SecretVersionsToStages {
			if !strings.HasPrefix(id, "joblet-") || !slices.Contains(stages, "JOBLET_PENDING") {
				continue
			}
			name := aws.ToString(s.Name)
			if _, err := r.c.UpdateSecretVersionStage(ctx, &sm.UpdateSecretVersionStageInput{SecretId: s.Name, VersionStage: aws.String("AWSPENDING"), MoveToVersionId: aws.String(id)}); err != nil {
				t.Fatal(err)
			}
			if _, err := r.c.UpdateSecretVersionStage(ctx, &sm.UpdateSecretVersionStageInput{SecretId: s.Name, VersionStage: aws.String("JOBLET_PENDING"), RemoveFromVersionId: aws.String(id)}); err != nil {
				t.Fatal(err)
			}
			legacy[name] = id
		}
	}
	if legacy[rootKeyName] == "" || legacy[rootCertName] == "" {
		t.Fatalf("the begun rotation's staged versions: %v, want %s and %s among them", legacy, rootKeyName, rootCertName)
	}
	t.Logf("staged versions relabelled AWSPENDING, as an earlier joblet left them: %d secrets", len(legacy))

	// Secrets Manager reads that as a rotation of its own in progress.
	err = rotateBy(r.c, rootKeyName, r.token(), r.fnARN, "rate(90 days)")
	if err == nil || !strings.Contains(err.Error(), "previous rotation isn't complete") {
		t.Fatalf("RotateSecret on %s with the begun rotation labelled AWSPENDING: %v, want refused (a previous rotation isn't complete)", rootKeyName, err)
	}
	if strings.Contains(fn.Proc.Output(), "joblet rotation step") {
		t.Fatalf("the function ran for a refused RotateSecret:\n%s", fn.Proc.Output())
	}
	t.Logf("RotateSecret while the legacy labels stand: %v", err)
	if err := oneRequest(cfg); err != nil {
		t.Fatalf("the node with the legacy labels: %v", err)
	}

	// Any rotate-ca step adopts it: status.
	st := harness.MustRun(t, opEnv, joblet, "certs", "rotate-ca", "status")
	if !strings.Contains(st.Stdout+st.Stderr, "a rotation begun by an earlier version") {
		t.Fatalf("rotate-ca status does not say it moved the labels:\n%s", st)
	}
	r.phase("begun")
	for name, id := range legacy {
		if got := stagesOf(t, r.c, name)[id]; !slices.Contains(got, "JOBLET_PENDING") || slices.Contains(got, "AWSPENDING") {
			t.Fatalf("%s version %s after rotate-ca status: %v, want JOBLET_PENDING and no AWSPENDING", name, id, got)
		}
	}

	// The schedule goes on: the next run promotes.
	attempts := r.until("promote after adopting", r.token(), 30*time.Second)
	if s := r.phase("promoted"); s.Current.Sha256 == oldRoot {
		t.Fatal("the promote run left the old root current")
	}
	if root, _ := r.currentRoot(); root == oldRoot {
		t.Fatalf("%s's AWSCURRENT is still the old root's key", rootKeyName)
	}
	if err := oneRequest(cfg); err != nil {
		t.Fatalf("the node after the promote run: %v", err)
	}
	t.Logf("the promote run went ahead after %d attempt(s)", attempts)
}

// `joblet certs iam-policy --for rotator` covers a whole root rotation:
// the begin, promote and finish runs on joblet/ca-key (each its four
// steps, run as an operator runs them, with --nodes naming a running
// node), against moto with IAM enforced, holding only the policy's
// actions, and every call recorded is inside the policy's resources.
func TestRotateSecretRootIAMPolicy(t *testing.T) {
	t.Parallel()
	iam := startRotatorIAM(t, 9)
	m, rotator, opID, opKey, fnID, fnKey := iam.m, iam.rotator, iam.opID, iam.opKey, iam.fnID, iam.fnKey
	joblet, _ := harness.Bins(t)
	// The node is not what is checked here: it may do anything.
	nodeID, nodeKey := iamUserPolicy(t, m.URL, "node", `{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]}`)
	proxy := harness.StartAWSProxy(t, m.URL)
	opHome := t.TempDir()
	opEnv := harness.Env(append(harness.AWSEnv(m.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+opHome, "AWS_ACCESS_KEY_ID="+opID, "AWS_SECRET_ACCESS_KEY="+opKey)...)
	home, port, env := smNode(t, m.URL, "AWS_ACCESS_KEY_ID="+nodeID, "AWS_SECRET_ACCESS_KEY="+nodeKey)
	n := fleetNode{home: home, addr: fmt.Sprintf("127.0.0.1:%d", port), env: env}
	harness.MustRun(t, opEnv, joblet, "certs", "init", "--address", n.addr, "--out", filepath.Join(opHome, "configs"))
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	n.proc = harness.Start(t, env, joblet, "server", "--config", n.config())
	cfg := filepath.Join(opHome, "configs", "rnx-config.yml")
	harness.Eventually(t, 15*time.Second, "node up", func() error { return oneRequest(cfg) })
	fnEnv := harness.Env(append(harness.AWSEnv(proxy.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+t.TempDir(), "JOBLET_SEEN_DIR=off",
		"AWS_ACCESS_KEY_ID="+fnID, "AWS_SECRET_ACCESS_KEY="+fnKey)...)
	statusEnv := harness.Env(append(harness.AWSEnv(m.URL), "USE_SECRETS_MANAGER=true", "JOBLET_HOME="+t.TempDir(), "AWS_ACCESS_KEY_ID="+nodeID, "AWS_SECRET_ACCESS_KEY="+nodeKey)...)

	runs := map[string]int{}
	for i, want := range []string{"begun", "promoted", "stable"} {
		token := fmt.Sprintf("6d5e4f3a-2b1c-4d0e-9f8a-%012d", i+1)
		step := func(s string) harness.Result {
			return harness.Run(t, fnEnv, joblet, "certs", "rotate-secret", "--secret-id", rootKeyName, "--token", token, "--step", s,
				"--nodes", n.addr, "--client-window", "1s")
		}
		// createSecret until the fleet is ready (the node trusts, then
		// serves from, the new root after its refresh).
		end := time.Now().Add(30 * time.Second)
		for a := 1; ; a++ {
			r := step("createSecret")
			if r.Code == 0 {
				runs[want] = a
				break
			}
			if !strings.Contains(r.Stderr, "joblet root rotation waits for the fleet") || time.Now().After(end) {
				t.Fatalf("createSecret of the run to %s (attempt %d): %s", want, a, r)
			}
			time.Sleep(500 * time.Millisecond)
		}
		for _, s := range []string{"setSecret", "testSecret", "finishSecret"} {
			if r := step(s); r.Code != 0 {
				t.Fatalf("%s of the run to %s: %s", s, want, r)
			}
		}
		if got := rotationStatus(t, statusEnv).Phase; got != want {
			t.Fatalf("after the run the fleet is %s, want %s", got, want)
		}
	}
	calls := proxy.Recorded()
	checkFlow(t, "rotator", rotator, calls)
	seen := map[string]bool{}
	for _, c := range calls {
		seen[c.Action] = true
	}
	t.Logf("a whole root rotation by three runs (createSecret attempts %v): %d calls, actions %v, all inside the rotator policy", runs, len(calls), keys(seen))
	// IAM was enforced: a call outside the policy is denied.
	denied := harness.Run(t, harness.Env(append(harness.AWSEnv(m.URL), "AWS_ACCESS_KEY_ID="+fnID, "AWS_SECRET_ACCESS_KEY="+fnKey)...),
		"aws", "secretsmanager", "cancel-rotate-secret", "--secret-id", rootKeyName)
	if denied.Code == 0 || !strings.Contains(denied.Stderr, "AccessDenied") {
		t.Fatalf("the rotator's credentials cancel a schedule, outside its policy: IAM is not enforced? %s", denied)
	}
}
