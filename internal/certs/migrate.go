package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Material is a CA and the role pairs to move between stores, as PEM.
type Material struct {
	CACert, CAKey string
	// NodeCA is the node-issuing pair {cert, key}; empty: a new one is
	// issued when the CA allows it (a CA made before it does not).
	NodeCA  [2]string
	Clients map[pki.Role][2]string // role -> {cert, key}
}

// MaterialFromHome reads what an embedded install keeps in its private
// store (HOME/ca/<prefix>/...). An install without a CA key (the shell
// scripts threw it away) cannot keep its CA, and the error says so.
func MaterialFromHome(home, prefix string) (*Material, error) {
	root := filepath.Join(home, "ca")
	n := Names{Prefix: prefix}
	if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(n.CAKey()))); errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s has no CA private key (%s): this install did not keep it (installs made by the old shell scripts threw it away), so its CA cannot move and its clients' configs cannot be kept. "+
			"Start the shared store with a new CA instead (`USE_SECRETS_MANAGER=true joblet certs bootstrap`) and hand out the new rnx configs; or, if you kept the key elsewhere, import it with --ca-cert and --ca-key",
			home, filepath.Join(root, filepath.FromSlash(n.CAKey())))
	}
	st, err := secretstore.NewDirStore(root)
	if err != nil {
		return nil, err
	}
	local := (&Fleet{Store: st, Prefix: prefix}).defaults()
	s, err := local.readState(context.Background(), bootstrapScope(CAKeyRef{}))
	if err != nil {
		return nil, err
	}
	vals := s.vals
	m := &Material{CACert: vals[n.CACert()], CAKey: vals[n.CAKey()], NodeCA: [2]string{vals[n.NodeCACert()], vals[n.NodeCAKey()]}, Clients: map[pki.Role][2]string{}}
	for _, r := range pki.Roles {
		if c, k := vals[n.ClientCert(r)], vals[n.ClientKey(r)]; c != "" && k != "" {
			m.Clients[r] = [2]string{c, k}
		}
	}
	return m, nil
}

// ImportResult says what Import did.
type ImportResult struct {
	CA        CertInfo          `json:"ca"`
	Clients   map[string]string `json:"clients"` // role -> imported or issued
	Unchanged bool              `json:"unchanged"`
}

// Import seeds st with m, keeping the CA: its fingerprint does not change,
// so certificates it signed keep working. Roles m lacks get a new pair from
// the imported CA. A store that already holds another CA is refused unless
// force (then every secret gets a new version; the old ones stay
// AWSPREVIOUS). Everything is checked before anything is written.
func (fl *Fleet) Import(ctx context.Context, m *Material, force bool) (*ImportResult, error) {
	f := fl.defaults()
	n, st, now, prefix := f.names(), f.Store, f.Now(), f.Prefix
	ca, err := parsePair(m.CACert, m.CAKey, "the CA certificate", "the CA key")
	if err != nil {
		return nil, err
	}
	if err := pki.CheckCA(ca.Cert, now); err != nil {
		return nil, fmt.Errorf("cannot import this CA: %w", err)
	}
	res := &ImportResult{CA: infoOf(ca.Cert), Clients: map[string]string{}}
	writes := []struct{ name, value string }{{n.CAKey(), m.CAKey}, {n.CACert(), m.CACert}}
	if pki.AllowsIntermediates(ca.Cert) {
		pair, err := importNodeCA(m.NodeCA, ca, now, f.nodeCALifetime(nil), f.nodeCANames(nil, true))
		if err != nil {
			return nil, err
		}
		writes = append(writes, struct{ name, value string }{n.NodeCAKey(), pair[1]}, struct{ name, value string }{n.NodeCACert(), pair[0]})
	}
	for _, role := range pki.Roles {
		pair, ok := m.Clients[role]
		if ok {
			c, err := parsePair(pair[0], pair[1], string(role)+" client certificate", string(role)+" client key")
			if err != nil {
				return nil, err
			}
			if err := checkClient(c.Cert, role, []*x509.Certificate{ca.Cert}, now); err != nil {
				return nil, fmt.Errorf("cannot import the %s client certificate: %w", role, err)
			}
			res.Clients[string(role)] = "imported"
		} else {
			key, err := pki.GenerateKey(pki.ECDSAP256, nil)
			if err != nil {
				return nil, err
			}
			is, err := ca.IssueClient(key.Public(), role, now, f.ClientLifetime)
			if err != nil {
				return nil, err
			}
			kp, err := pki.EncodeKey(key)
			if err != nil {
				return nil, err
			}
			pair = [2]string{string(pki.EncodeCert(is.Cert)), string(kp)}
			res.Clients[string(role)] = "issued"
		}
		writes = append(writes, struct{ name, value string }{n.ClientKey(role), pair[1]}, struct{ name, value string }{n.ClientCert(role), pair[0]})
	}

	existing, err := f.readState(ctx, scope{})
	if err != nil {
		return nil, fmt.Errorf("read the store before importing: %w", err)
	}
	if cur := existing.vals[n.CACert()]; cur != "" {
		if cur == m.CACert {
			res.Unchanged = true
			return res, nil
		}
		if !force {
			c, _ := pki.ParseCert([]byte(cur))
			what := "a CA that does not parse"
			if c != nil {
				what = fmt.Sprintf("a CA (serial %s, sha256 %s, expires %s)", pki.SerialHex(c.SerialNumber), pki.Fingerprint(c), c.NotAfter.UTC().Format("2006-01-02"))
			}
			return nil, fmt.Errorf("the store already holds %s under the prefix %q: refusing to replace it. Use another --prefix, or --force to replace it (the previous versions stay retrievable as AWSPREVIOUS)", what, prefix)
		}
	}
	for _, w := range writes {
		if force {
			err = putOrCreate(ctx, st, n, w.name, w.value)
		} else if err = st.Create(ctx, n.Secret(w.name, w.value)); errors.Is(err, secretstore.ErrExist) {
			// A re-run after an interrupted import: the same value is fine.
			got, gerr := readBack(ctx, st, w.name)
			if gerr == nil && got[w.name] == w.value {
				err = nil
			} else if gerr == nil {
				err = fmt.Errorf("%s already holds another value: the store has part of another fleet; use --force or another --prefix", w.name)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("import %s: %w", w.name, err)
		}
	}
	return res, nil
}

// Export copies the fleet's shared secrets into the store to (moving off
// AWS into an embedded install's private store), under the same prefix. A
// destination that already holds a different CA is refused unless force.
func (fl *Fleet) Export(ctx context.Context, to secretstore.Store, force bool) error {
	f := fl.defaults()
	n, prefix := f.names(), f.Prefix
	s, err := f.readState(ctx, wholeScope)
	if err != nil {
		return err
	}
	vals := s.vals
	if vals[n.CACert()] == "" {
		return fmt.Errorf("the store holds no CA under the prefix %q: nothing to export", prefix)
	}
	if ref := s.caKey; ref.InKMS() {
		if c, err := pki.ParseCert([]byte(vals[n.CACert()])); err == nil {
			if k, err := pki.ParseKey([]byte(vals[n.CAKey()])); err != nil || !samePublicKey(c, k) {
				return fmt.Errorf("%w: this fleet's CA key is in AWS KMS (%s) and cannot leave it, and an embedded install signs with a local key: "+
					"keep the fleet on AWS, or start the embedded install with its own CA (`joblet certs bootstrap` with USE_SECRETS_MANAGER=false) and hand out its client configs", ErrCAMode, ref.KeyID)
			}
		}
	}
	m := &Material{CACert: vals[n.CACert()], CAKey: vals[n.CAKey()], NodeCA: [2]string{vals[n.NodeCACert()], vals[n.NodeCAKey()]}, Clients: map[pki.Role][2]string{}}
	for _, r := range pki.Roles {
		m.Clients[r] = [2]string{vals[n.ClientCert(r)], vals[n.ClientKey(r)]}
	}
	dst := f
	dst.Store = to
	_, err = dst.Import(ctx, m, force)
	return err
}

// importNodeCA checks the node-issuing pair to import against ca, or
// issues a new one when there is none (or it is not ca's): {cert, key}.
func importNodeCA(pair [2]string, ca *pki.CA, now time.Time, lifetime time.Duration, names pki.NameConstraints) ([2]string, error) {
	if pair[0] != "" && pair[1] != "" {
		nca, err := parsePair(pair[0], pair[1], "the node-issuing CA certificate", "the node-issuing CA key")
		if err != nil {
			return pair, err
		}
		if pki.CheckNodeCA(nca.Cert, ca.Cert, now) == nil {
			return pair, nil
		}
	}
	key, err := pki.GenerateKey(pki.KeyTypeOf(ca.Key), nil)
	if err != nil {
		return pair, err
	}
	is, err := ca.IssueNodeCA(key.Public(), now, lifetime, names)
	if err != nil {
		return pair, err
	}
	kp, err := pki.EncodeKey(key)
	if err != nil {
		return pair, err
	}
	return [2]string{string(pki.EncodeCert(is.Cert)), string(kp)}, nil
}
