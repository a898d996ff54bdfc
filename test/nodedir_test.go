package test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/nodedir"
	"github.com/ehsaniara/joblet/test/harness"
)

// docs/JOBS.md's node directory from EC2, run as written against moto: the
// running instances of the tagged fleet, by instance id, and nothing else.
func TestNodeDirectoryFromEC2(t *testing.T) {
	t.Parallel()
	moto := resetMoto(t)
	env := harness.Env(harness.AWSEnv(moto.URL)...)
	run := func(tag string, count int) []string {
		return strings.Fields(harness.MustRun(t, env, "aws", "ec2", "run-instances", "--image-id", "ami-12c6146b", "--count", strconv.Itoa(count),
			"--query", "Instances[].InstanceId", "--output", "text",
			"--tag-specifications", "ResourceType=instance,Tags=[{Key=joblet-fleet,Value="+tag+"}]").Stdout)
	}
	prod, other := run("prod", 3), run("staging", 1)
	harness.MustRun(t, env, "aws", "ec2", "stop-instances", "--instance-ids", prod[0])
	t.Logf("prod %v (the first stopped), staging %v", prod, other)

	doc, err := os.ReadFile(filepath.Join("..", "docs", "JOBS.md"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)<!-- node-directory-from-ec2 -->\n```bash\n(.*?)```").FindSubmatch(doc)
	if m == nil {
		t.Fatal("docs/JOBS.md lost its node-directory-from-ec2 block")
	}
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", string(m[1])+`printf '%s' "$JOBLET_NODES"`)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the block failed: %v\n%s", err, out)
	}
	d, err := nodedir.FromList(string(out))
	if err != nil {
		t.Fatalf("JOBLET_NODES=%q is no node list: %v", out, err)
	}
	var names []string
	for _, n := range d.Nodes {
		if !strings.HasSuffix(n.Address, ":50051") || strings.HasPrefix(n.Address, ":") {
			t.Errorf("node %s at %q", n.Name, n.Address)
		}
		names = append(names, n.Name)
	}
	want := append([]string{}, prod[1:]...)
	sort.Strings(names)
	sort.Strings(want)
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("JOBLET_NODES=%s\nnames %v, want the running prod instances %v", out, names, want)
	}
}
