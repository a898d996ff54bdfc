package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// RnxVersion is the rnx-config.yml format version.
const RnxVersion = "3.0"

// Rnx is rnx-config.yml: named nodes, each with an address and credentials.
type Rnx struct {
	Version string           `yaml:"version"`
	Nodes   map[string]*Node `yaml:"nodes"`
	// Login is where `rnx login` gets a person's certificate: with it,
	// nodes may come without cert and key (a config for people, whose
	// certificate sits next to it after each login).
	Login *Login `yaml:"login,omitempty"`
}

// Login is the issuer `rnx login` asks (issue 26).
type Login struct {
	// Issuer is the issuer's HTTPS URL (joblet issuer, or its Lambda
	// function URL).
	Issuer string `yaml:"issuer"`
	// IssuerCA (PEM), when set, is what the issuer's HTTPS certificate
	// chains to, beside the system's roots.
	IssuerCA string `yaml:"issuerCA,omitempty"`
}

// Node is one entry of an rnx config; cert, key and ca hold PEM.
type Node struct {
	Address   string `yaml:"address"`
	Cert      string `yaml:"cert"`
	Key       string `yaml:"key"`
	CA        string `yaml:"ca"`
	IsDefault bool   `yaml:"isDefault,omitempty"`
	CRL       string `yaml:"crl,omitempty"` // revoked certificates (PEM), refused as servers
	// Trust is the root-signed trust state CA came from (a DSSE
	// envelope): `rnx config refresh` takes a newer one only when one of
	// its roots signed it.
	Trust string `yaml:"trust,omitempty"`
}

// Marshal renders the config as YAML.
func (r *Rnx) Marshal() ([]byte, error) { return encode(r) }

// ParseRnx parses and validates an rnx config.
func ParseRnx(b []byte) (*Rnx, error) {
	var r Rnx
	if err := decodeStrict(b, &r); err != nil {
		return nil, err
	}
	if r.Version != RnxVersion {
		return nil, fmt.Errorf("version %q is not supported: this rnx reads version %q", r.Version, RnxVersion)
	}
	if len(r.Nodes) == 0 {
		return nil, errors.New("no nodes defined")
	}
	defaults := 0
	for name, n := range r.Nodes {
		if n == nil || n.Address == "" || n.CA == "" {
			return nil, fmt.Errorf("node %q needs address, cert, key and ca", name)
		}
		if (n.Cert == "" || n.Key == "") && (r.Login == nil || n.Cert != "" || n.Key != "") {
			return nil, fmt.Errorf("node %q needs address, cert, key and ca (a config for people has login.issuer instead of cert and key)", name)
		}
		if n.IsDefault {
			defaults++
		}
	}
	if defaults > 1 {
		return nil, errors.New("more than one node has isDefault: true")
	}
	return &r, nil
}

// LoadRnx reads an rnx config file.
func LoadRnx(path string) (*Rnx, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read rnx config: %w", err)
	}
	r, err := ParseRnx(b)
	if err != nil {
		return nil, fmt.Errorf("rnx config %s: %w", path, err)
	}
	return r, nil
}

// Select picks a node: the named one, else the one marked isDefault, else
// the one called "default".
func (r *Rnx) Select(name string) (string, *Node, error) {
	if name != "" {
		n, ok := r.Nodes[name]
		if !ok {
			return "", nil, fmt.Errorf("node %q is not in the config (it has: %v)", name, r.NodeNames())
		}
		return name, n, nil
	}
	for _, k := range r.NodeNames() {
		if r.Nodes[k].IsDefault {
			return k, r.Nodes[k], nil
		}
	}
	if n, ok := r.Nodes["default"]; ok {
		return "default", n, nil
	}
	return "", nil, fmt.Errorf("no node given and none is the default: use --node (the config has: %v)", r.NodeNames())
}

// NodeNames lists node names sorted.
func (r *Rnx) NodeNames() []string {
	names := make([]string, 0, len(r.Nodes))
	for k := range r.Nodes {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

// FindRnx returns the first config that exists in rnx's lookup order:
// explicit path, $RNX_CONFIG, ~/.rnx/rnx-config.yml,
// /opt/joblet/config/rnx-config.yml. The current directory is not looked
// in: a config holds credentials and says which servers to trust, and one
// left in whatever directory rnx runs in (a checkout, a shared /tmp) must
// not be picked up unasked. When none is found the error names where it
// looked, and a ./rnx-config.yml it did not read.
func FindRnx(explicit string) (string, error) {
	if explicit != "" {
		return explicit, nil
	}
	if env := os.Getenv("RNX_CONFIG"); env != "" {
		return env, nil
	}
	var candidates []string
	if home, err := os.UserHomeDir(); err == nil {
		candidates = append(candidates, filepath.Join(home, ".rnx", "rnx-config.yml"))
	}
	candidates = append(candidates, "/opt/joblet/config/rnx-config.yml")
	for _, c := range candidates {
		if _, err := os.Stat(c); err == nil {
			return c, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("rnx config %s: %w", c, err)
		}
	}
	msg := fmt.Sprintf("no rnx config found: looked at --config, $RNX_CONFIG, %s", strings.Join(candidates, ", "))
	if _, err := os.Stat("rnx-config.yml"); err == nil {
		msg += "; ./rnx-config.yml is not read unless named: pass --config ./rnx-config.yml or set RNX_CONFIG"
	} else {
		msg += ": pass --config PATH or set RNX_CONFIG"
	}
	return "", errors.New(msg)
}

// Address joins host and port for a client address.
func Address(host string, port int) string { return joinHostPort(host, port) }
