package jobid

import (
	"regexp"
	"strings"
	"testing"
)

var shape = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)

func TestNewNamesItsNode(t *testing.T) {
	for _, node := range []string{"node-1", "i-0abc123def4567890", "web_1", "web.example:1", "ü", strings.Repeat("n", 200)} {
		id, err := New(node)
		if err != nil {
			t.Fatal(err)
		}
		if !shape.MatchString(id) {
			t.Errorf("New(%q) = %q: outside [A-Za-z0-9_-]", node, id)
		}
		tag, ok := Node(id)
		if !ok || tag != Tag(node) || !On(id, node) {
			t.Errorf("Node(%q) = %q, %v; want %q", id, tag, ok, Tag(node))
		}
		if len(node) < maxTag && On(id, node+"x") {
			t.Errorf("%q is also on %q", id, node+"x")
		}
		if len(id) > maxTag+1+randomLen {
			t.Errorf("%q is %d characters", id, len(id))
		}
	}
	a, _ := New("n")
	b, _ := New("n")
	if a == b {
		t.Fatalf("two IDs alike: %q", a)
	}
}

func TestNodeOfOldAndBadIDs(t *testing.T) {
	if id, _ := New(""); len(id) != randomLen {
		t.Fatalf("New(\"\") = %q, want the old 12 hex digits", id)
	}
	if tag, ok := Node("0123456789ab"); !ok || tag != "" {
		t.Fatalf("an old ID: %q %v", tag, ok)
	}
	if On("0123456789ab", "") {
		t.Fatal("an old ID is on no node")
	}
	for _, bad := range []string{"", "x", "_0123456789ab", "n_0123456789AB", "n_0123456789a", "n.1_0123456789ab", "../x_0123456789ab", "n_"} {
		if _, ok := Node(bad); ok {
			t.Errorf("Node(%q) accepted", bad)
		}
	}
}
