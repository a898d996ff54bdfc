package certs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
)

// InitOptions are an operator's settings for Init.
type InitOptions struct {
	// Dir receives rnx-config.yml (every role) and rnx-config-<role>.yml.
	Dir string
	// Address is HOST:PORT the client configs point at: the fleet's load
	// balancer, or a node.
	Address string
	CAKey   CAKeyRef // where the root's key lives (in AWS KMS: opened with OpenKMS)
}

// Init creates the fleet in the store from an operator's machine (or
// completes a half-made one, or reads the one there), so that nodes only
// ever join and hold nothing but their own key; it writes the client
// configs into o.Dir. It issues no server certificate. A client config
// already in o.Dir with other content is refused, not overwritten
// (`rnx config refresh` updates one).
func (fl *Fleet) Init(ctx context.Context, o InitOptions) (*Result, error) {
	f := fl.defaults()
	if _, _, err := net.SplitHostPort(o.Address); err != nil || o.Address == "" {
		return nil, fmt.Errorf("%w: --address %q: give HOST:PORT of the fleet's load balancer or of a node (the client configs point there)", ErrUsage, o.Address)
	}
	// The balancer's name is the fleet's: its node-issuing CA may sign
	// for it (nodes behind the balancer carry it, --public-address).
	host, _, _ := net.SplitHostPort(o.Address)
	lb, err := pki.ParseNameConstraints([]string{host})
	if err != nil {
		return nil, fmt.Errorf("%w: --address %q: %v", ErrUsage, o.Address, err)
	}
	f.PermitNames = f.PermitNames.Union(lb)
	key := o.CAKey
	if key.InKMS() && f.OpenKMS == nil {
		return nil, fmt.Errorf("%w: --ca-kms-key-id needs AWS (Secrets Manager mode)", ErrUsage)
	}
	bo := BootstrapOptions{CAKey: key}
	bo.defaults()
	// The store's mode is the caller's to report (Init runs from an
	// operator's machine in any mode); this run is the operator's.
	res := &Result{Store: f.StoreDesc, Prefix: f.Prefix}
	b := &bootstrapper{f: f, o: bo, names: f.names(), res: res, operator: true, key: key}
	sh, err := b.shared(ctx, nil)
	if err != nil {
		return nil, err
	}
	if nc, ok := pki.NodeConstraintsOf(sh.issuer.Cert); ok && !nc.Covers(f.PermitNames) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the fleet's node-issuing CA (made before this run) does not permit all of %s (it permits %s): widen it with `joblet certs node-ca --permit-server-names %s`",
			strings.Join(f.PermitNames.Strings(), ", "), strings.Join(nc.Strings(), ", "), strings.Join(f.PermitNames.Strings(), ",")))
	}
	files, err := clientFiles(o.Dir, o.Address, sh)
	if err != nil {
		return nil, err
	}
	for _, file := range files {
		old, err := os.ReadFile(file.Path)
		switch {
		case errors.Is(err, os.ErrNotExist):
		case err != nil:
			return nil, err
		case !bytes.Equal(old, file.Data):
			return nil, fmt.Errorf("%w: %s exists and differs from what this fleet gives: refusing to overwrite it (nothing was written). Update it with `rnx --config %s config refresh`, or choose another --out", ErrUsage, file.Path, file.Path)
		}
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", o.Dir, err)
	}
	if err := atomicfile.WriteAll(files); err != nil {
		return nil, err
	}
	for _, file := range files {
		res.Files = append(res.Files, file.Path)
	}
	return res, nil
}

// ClientNode returns a client config entry for role pointing at address,
// from what a client of that role may read (the root certificate, the
// trust bundle, the CRL and the role's pair): how `rnx config init` gets a
// config without a node.
func (fl *Fleet) ClientNode(ctx context.Context, role pki.Role, address string) (*config.Node, error) {
	f := fl.defaults()
	if _, _, err := net.SplitHostPort(address); err != nil || address == "" {
		return nil, fmt.Errorf("%w: --address %q: give HOST:PORT of the fleet's load balancer or of a node", ErrUsage, address)
	}
	s, err := f.readState(ctx, scope{roles: []pki.Role{role}})
	if err != nil {
		return nil, err
	}
	if err := checkPin(f.Pin, s); err != nil {
		return nil, err
	}
	if err := s.trusted(); err != nil {
		return nil, err
	}
	if err := s.rootVouched(); err != nil {
		return nil, err
	}
	n := s.n
	pair, err := parsePair(s.vals[n.ClientCert(role)], s.vals[n.ClientKey(role)], n.ClientCert(role), n.ClientKey(role))
	if err != nil {
		return nil, err
	}
	if err := checkClient(pair.Cert, role, s.trust, f.Now()); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInconsistentStore, n.ClientCert(role), err)
	}
	return &config.Node{Address: address, Cert: s.vals[n.ClientCert(role)], Key: s.vals[n.ClientKey(role)], CA: s.trustPEM(), CRL: s.vals[n.CRL()], Trust: s.docValue()}, nil
}
