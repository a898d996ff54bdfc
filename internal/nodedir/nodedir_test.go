package nodedir

import (
	"reflect"
	"strings"
	"testing"

	"github.com/ehsaniara/joblet/internal/config"
)

func TestLoadJoinsConfigAndList(t *testing.T) {
	t.Setenv(Env, "")
	cfg := &config.Rnx{Nodes: map[string]*config.Node{
		"default": {Address: "lb:50051", CA: "A"},
		"node-1":  {Address: "10.0.0.1:50051", CA: "A"},
		"other":   {Address: "10.9.9.9:50051", CA: "B"},
		"reader":  {Address: "lb:50051", CA: "A"},
	}}
	d, err := Load(cfg, "default", "node-2=10.0.0.2:50051, 10.0.0.1:50051,10.0.0.3:50051")
	if err != nil {
		t.Fatal(err)
	}
	want := []Node{{"default", "lb:50051", true}, {"node-1", "10.0.0.1:50051", true}, {"node-2", "10.0.0.2:50051", false}, {"", "10.0.0.3:50051", false}}
	if !reflect.DeepEqual(d.Nodes, want) {
		t.Fatalf("got %+v\nwant %+v", d.Nodes, want)
	}
	if got := d.Named(func(n string) bool { return strings.HasPrefix(n, "node-") }); len(got) != 2 {
		t.Fatalf("Named: %+v", got)
	}
	if got := d.Unnamed(); len(got) != 1 || got[0].Address != "10.0.0.3:50051" {
		t.Fatalf("Unnamed: %+v", got)
	}
}

func TestListFromEnvAndErrors(t *testing.T) {
	t.Setenv(Env, "a=h:1 h:2")
	d, err := FromList("")
	if err != nil || len(d.Nodes) != 2 || d.Addresses()[1] != "h:2" {
		t.Fatalf("%+v %v", d, err)
	}
	for _, bad := range []string{"h", "=h:1", "a=h"} {
		if _, err := ParseList(bad); err == nil {
			t.Errorf("ParseList(%q) accepted", bad)
		}
	}
}
