// Package nodedir is the node directory: the one list of a fleet's nodes,
// name → address, that every client command needing the fleet's nodes
// shares (rnx's job routing and fleet-wide listing, the rotation commands'
// --nodes, and whatever pushes to every node).
//
// It is read, never written: from the rnx config's per-node entries and
// from a list given as --nodes or JOBLET_NODES. Nodes have no say in it
// (they get no write access to anything for it), so a stolen node cannot
// add itself or redirect a name. A directory is small data held by the
// client; a fleet of many nodes keeps it in whatever already lists them (an
// auto-scaling group's instances, DNS, the deploy tool) and passes it as
// JOBLET_NODES: docs/JOBS.md has the EC2 one-liner (a node's id is its
// instance id there), which TestNodeDirectoryFromEC2 runs against moto.
package nodedir

import (
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/ehsaniara/joblet/internal/config"
)

// Env is the environment variable holding a node list (as --nodes).
const Env = "JOBLET_NODES"

// Node is one entry of the directory.
type Node struct {
	// Name is the node's id when known: an rnx config entry's name, or the
	// NAME of a NAME=HOST:PORT list item. A plain HOST:PORT item has none.
	Name    string
	Address string // HOST:PORT
	// Entry says the node came from the rnx config's entry Name (with
	// its own credentials); otherwise it came from a list and is dialed
	// with the credentials of the entry the command selected.
	Entry bool
}

// Directory is the fleet's nodes, in the order their sources gave them:
// config entries first, then the list; an address given twice is kept
// once.
type Directory struct {
	Nodes []Node
}

// ParseList parses a node list: comma- or whitespace-separated items, each
// HOST:PORT or NAME=HOST:PORT, NAME being the node's id (as `rnx info` and
// job IDs show it).
func ParseList(s string) ([]Node, error) {
	var out []Node
	for _, item := range strings.FieldsFunc(s, func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		n := Node{Address: item}
		if name, addr, ok := strings.Cut(item, "="); ok {
			n.Name, n.Address = name, addr
			if name == "" {
				return nil, fmt.Errorf("node list item %q: the name before '=' is empty (use NAME=HOST:PORT or HOST:PORT)", item)
			}
		}
		if _, _, err := net.SplitHostPort(n.Address); err != nil {
			return nil, fmt.Errorf("node list item %q: use HOST:PORT or NAME=HOST:PORT: %w", item, err)
		}
		out = append(out, n)
	}
	return out, nil
}

// FromList is the directory of a node list alone (--nodes, else
// JOBLET_NODES when list is "").
func FromList(list string) (Directory, error) {
	return Load(nil, "", list)
}

// Load builds the directory from the entries of an rnx config (cfg may be
// nil) that belong to the fleet of its entry selected, the ones trusting
// the same CA (a config may hold several fleets), and a node list (list;
// "" takes $JOBLET_NODES). The selected entry comes first. Only addresses
// and names come from the config: whoever dials them uses one entry's
// credentials (the role the user chose).
func Load(cfg *config.Rnx, selected, list string) (Directory, error) {
	var d Directory
	seen := map[string]bool{}
	add := func(n Node) {
		if !seen[n.Address] {
			seen[n.Address] = true
			d.Nodes = append(d.Nodes, n)
		}
	}
	if cfg != nil && cfg.Nodes[selected] != nil {
		sel := cfg.Nodes[selected]
		add(Node{Name: selected, Address: sel.Address, Entry: true})
		for _, name := range cfg.NodeNames() {
			if cfg.Nodes[name].CA == sel.CA {
				add(Node{Name: name, Address: cfg.Nodes[name].Address, Entry: true})
			}
		}
	}
	if list == "" {
		list = os.Getenv(Env)
	}
	items, err := ParseList(list)
	if err != nil {
		return Directory{}, fmt.Errorf("%s: %w", Env+" / --nodes", err)
	}
	for _, n := range items {
		add(n)
	}
	return d, nil
}

// Addresses lists every address of the directory.
func (d Directory) Addresses() []string {
	out := make([]string, 0, len(d.Nodes))
	for _, n := range d.Nodes {
		out = append(out, n.Address)
	}
	return out
}

// Named returns the entries whose name is the node called name by match
// (a comparison that knows how names appear, e.g. in job IDs).
func (d Directory) Named(match func(name string) bool) []Node {
	var out []Node
	for _, n := range d.Nodes {
		if n.Name != "" && match(n.Name) {
			out = append(out, n)
		}
	}
	return out
}

// Unnamed returns the list entries that name no node: what a search for a
// node must ask.
func (d Directory) Unnamed() []Node {
	var out []Node
	for _, n := range d.Nodes {
		if n.Name == "" {
			out = append(out, n)
		}
	}
	return out
}
