package test

import (
	"encoding/json"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/test/harness"
)

// Issue 26, "nodes know who", against moto and a running node: two persons
// with different roles (alice, an IAM user, as developer; carol, a session
// of an assumed role, as maintainer) and the shared admin and developer
// configs each run a job. `rnx job list` (text and --json) and `rnx job
// status` show who started each job, the node's audit line of every call
// names the person and role, and the per-job rules stay the role's: alice
// sees the arguments of the shared developer's job, not the admin's.
func TestLoginJobListShowsWho(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	joblet, rnx := harness.Bins(t)
	home, _, env := smNode(t, moto.URL)
	harness.MustRun(t, env, joblet, "certs", "bootstrap", "--refresh-interval", "1s")
	node := harness.Start(t, env, joblet, "server", "--config", filepath.Join(home, "config", "joblet-config.yml"))
	const alice, carol = "arn:aws:iam::123456789012:user/alice", "arn:aws:iam::123456789012:role/ops#carol"
	signIdentityPolicy(t, env, joblet, home, `{"rules":[{"user":"`+alice+`","grant":"developer"},{"role":"arn:aws:iam::123456789012:role/ops","grant":"maintainer"}]}`)
	admin := filepath.Join(home, "config", "rnx-config.yml")
	user := newUserCA(t, "joblet")
	callers := []struct {
		name, cfg    string
		role, person string // person: "" for a shared role certificate
	}{
		{"alice", user.personConfig(t, admin, alice, pki.Developer), "developer", alice},
		{"carol", user.personConfig(t, admin, carol, pki.Maintainer), "maintainer", carol},
		{"shared-admin", admin, "admin", ""},
		{"shared-developer", filepath.Join(home, "config", "rnx-config-developer.yml"), "developer", ""},
	}
	shown := func(person string) string { // as the tables and the audit line show it
		if person == "" {
			return "shared"
		}
		return person
	}
	ids := map[string]string{}
	for _, c := range callers {
		r := harness.MustRun(t, harness.Env(), rnx, "--config", c.cfg, "job", "run", "--", "sh", "-c", "echo "+c.name)
		ids[c.name] = strings.TrimSpace(r.Stdout)
		if !jobIDShape.MatchString(ids[c.name]) {
			t.Fatalf("%s's job run: %s", c.name, r)
		}
	}

	// Text: one row per job, the role under STARTED BY, the person under
	// PERSON.
	list := harness.MustRun(t, harness.Env(), rnx, "--config", admin, "job", "list").Stdout
	if !regexp.MustCompile(`(?m)^ID\s+STATUS\s+EXIT\s+STARTED\s+STARTED BY\s+PERSON\s+COMMAND$`).MatchString(list) {
		t.Fatalf("job list header:\n%s", list)
	}
	for _, c := range callers {
		row := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ids[c.name]) + `\s+\S+\s+\S+\s+\S+\s+` + c.role + `\s+` + regexp.QuoteMeta(shown(c.person)) + `\s+sh -c`)
		if !row.MatchString(list) {
			t.Errorf("job list shows no row of %s's job %s as %s, %s:\n%s", c.name, ids[c.name], c.role, shown(c.person), list)
		}
	}

	// JSON, as alice lists: startedBy and startedByPerson; the arguments of
	// the developer role's jobs, whoever of the role started them.
	var jobs []struct {
		ID              string   `json:"id"`
		Args            []string `json:"args"`
		ArgsHidden      bool     `json:"argsHidden"`
		StartedBy       string   `json:"startedBy"`
		StartedByPerson *string  `json:"startedByPerson"`
	}
	out := harness.MustRun(t, harness.Env(), rnx, "--config", callers[0].cfg, "job", "list", "--json").Stdout
	if err := json.Unmarshal([]byte(out), &jobs); err != nil || len(jobs) != len(callers) {
		t.Fatalf("job list --json: %v\n%s", err, out)
	}
	for _, c := range callers {
		for _, j := range jobs {
			if j.ID != ids[c.name] {
				continue
			}
			if j.StartedByPerson == nil {
				t.Errorf("job list --json has no startedByPerson for %s's job:\n%s", c.name, out)
			} else if j.StartedBy != c.role || *j.StartedByPerson != c.person {
				t.Errorf("job list --json shows %s's job as started by %q, person %q", c.name, j.StartedBy, *j.StartedByPerson)
			}
			if own := c.role == "developer"; j.ArgsHidden == own || (len(j.Args) == 2) != own {
				t.Errorf("alice sees %s's job (role %s) with args %q hidden=%v", c.name, c.role, j.Args, j.ArgsHidden)
			}
		}
	}
	status := harness.MustRun(t, harness.Env(), rnx, "--config", admin, "job", "status", ids["carol"]).Stdout
	if !strings.Contains(status, "started by:  maintainer\nperson:      "+carol+"\n") {
		t.Errorf("job status of carol's job:\n%s", status)
	}
	r := harness.Run(t, harness.Env(), rnx, "--config", callers[0].cfg, "job", "stop", ids["shared-admin"])
	if r.Code == 0 || !strings.Contains(r.Stderr, `may not stop job `+ids["shared-admin"]) {
		t.Errorf("alice stopping the admin's job: %s", r)
	}

	// The audit line of each call names the person and the role.
	audit := func(parts ...string) error {
		for _, l := range strings.Split(node.Output(), "\n") {
			ok := strings.Contains(l, "msg=call ")
			for _, p := range parts {
				ok = ok && strings.Contains(l, p)
			}
			if ok {
				return nil
			}
		}
		return errNo(strings.Join(parts, " "))
	}
	harness.Eventually(t, 5*time.Second, "the audit lines", func() error {
		for _, c := range callers {
			if err := audit("method=RunJob ", "person="+shown(c.person)+" ", "role="+c.role+" ", "code=OK ", "job="+ids[c.name]+" "); err != nil {
				return err
			}
		}
		if err := audit("method=ListJobs ", "person="+alice+" ", "role=developer ", "code=OK "); err != nil {
			return err
		}
		return audit("method=StopJob ", "person="+alice+" ", "role=developer ", "code=PermissionDenied ", "job="+ids["shared-admin"]+" ")
	})
}

type errNo string

func (e errNo) Error() string { return "no audit line with " + string(e) }
