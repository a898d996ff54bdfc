package certs

import (
	"path/filepath"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// files renders joblet-config.yml and, on a node that keeps them (the one
// that created the fleet, an embedded node, a fleet from before the
// node-issuing CA), the client configs (clientFiles). A node that joined
// (sh.clients nil) gets its server config only. Every file holds a private
// key, hence 0600.
func (o *BootstrapOptions) files(srv *config.Server, sh *shared) ([]atomicfile.File, error) {
	dir := filepath.Join(o.Home, "config")
	addr, err := o.clientAddress()
	if err != nil {
		return nil, err
	}
	srvYAML, err := srv.Marshal()
	if err != nil {
		return nil, err
	}
	files := []atomicfile.File{{Path: filepath.Join(dir, "joblet-config.yml"), Data: srvYAML, Perm: 0o600}}
	if sh.clients == nil {
		return files, nil
	}
	clients, err := clientFiles(dir, addr, sh)
	return append(files, clients...), err
}

// clientFiles renders the operator's rnx-config.yml (node "default" is
// admin, then one node per other role) and one rnx-config-<role>.yml per
// role to hand out (its only node is "default"), for clients of addr.
func clientFiles(dir, addr string, sh *shared) ([]atomicfile.File, error) {
	node := func(r pki.Role) *config.Node {
		p := sh.clients[r]
		return &config.Node{Address: addr, Cert: p.certPEM, Key: p.keyPEM, CA: sh.trustPEM(), CRL: sh.crlPEM, Trust: sh.doc}
	}
	operator := &config.Rnx{Version: config.RnxVersion, Nodes: map[string]*config.Node{}}
	for _, r := range pki.Roles {
		name := string(r)
		if r == pki.Admin {
			name = "default"
		}
		n := node(r)
		n.IsDefault = r == pki.Admin
		operator.Nodes[name] = n
	}
	b, err := operator.Marshal()
	if err != nil {
		return nil, err
	}
	files := []atomicfile.File{{Path: filepath.Join(dir, "rnx-config.yml"), Data: b, Perm: 0o600}}
	for _, r := range pki.Roles {
		n := node(r)
		n.IsDefault = true
		one := &config.Rnx{Version: config.RnxVersion, Nodes: map[string]*config.Node{"default": n}}
		b, err := one.Marshal()
		if err != nil {
			return nil, err
		}
		files = append(files, atomicfile.File{Path: filepath.Join(dir, "rnx-config-"+string(r)+".yml"), Data: b, Perm: 0o600})
	}
	return files, nil
}
