package certs

// FORCE_REGENERATE: a new CA and new role pairs, each written as a new
// version of its secret.

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// regenerate replaces the CA and every role pair (FORCE_REGENERATE). Each
// secret gets a new version; the old one stays retrievable as the previous
// version (AWSPREVIOUS). Keys go before certificates so a reader between two
// writes sees a key whose certificate is missing or stale (and reports it)
// rather than a silently wrong pair.
func (b *bootstrapper) regenerate(ctx context.Context) (*shared, error) {
	now := b.f.Now()
	var caKey crypto.Signer = b.kms
	var keyWrite struct{ name, value string }
	if b.kms != nil {
		// The KMS key is the CA's key: a new CA certificate for it, and the
		// reference to it. A new KMS key gives a new CA key.
		keyWrite.name, keyWrite.value = b.names.CAKMSKey(), b.kms.KeyID()
	} else {
		k, err := pki.GenerateKey(b.f.KeyType, nil)
		if err != nil {
			return nil, err
		}
		enc, err := pki.EncodeKey(k)
		if err != nil {
			return nil, err
		}
		caKey, keyWrite.name, keyWrite.value = k, b.names.CAKey(), string(enc)
	}
	caCert, err := pki.NewCA(caKey, now, b.f.CALifetime)
	if err != nil {
		return nil, err
	}
	sh := &shared{ca: pki.CA{Cert: caCert, Key: caKey}, caPEM: string(pki.EncodeCert(caCert)), trust: []*x509.Certificate{caCert}, clients: map[pki.Role]pair{}}
	writes := []struct{ name, value string }{keyWrite, {b.names.CACert(), sh.caPEM}}
	nodeKey, err := pki.GenerateKey(b.f.KeyType, nil)
	if err != nil {
		return nil, err
	}
	nodeNames, err := b.newNodeCANames()
	if err != nil {
		return nil, err
	}
	nodeCA, err := sh.ca.IssueNodeCA(nodeKey.Public(), now, b.f.nodeCALifetime(nil), nodeNames)
	if err != nil {
		return nil, err
	}
	nodeKeyPEM, err := pki.EncodeKey(nodeKey)
	if err != nil {
		return nil, err
	}
	sh.issuer = pki.CA{Cert: nodeCA.Cert, Key: nodeKey}
	writes = append(writes, struct{ name, value string }{b.names.NodeCAKey(), string(nodeKeyPEM)}, struct{ name, value string }{b.names.NodeCACert(), string(pki.EncodeCert(nodeCA.Cert))})
	for _, role := range pki.Roles {
		key, err := pki.GenerateKey(b.f.KeyType, nil)
		if err != nil {
			return nil, err
		}
		is, err := sh.ca.IssueClient(key.Public(), role, now, b.f.ClientLifetime)
		if err != nil {
			return nil, err
		}
		b.noteCapped(string(role)+" client certificate", is)
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			return nil, err
		}
		p := pair{cert: is.Cert, certPEM: string(pki.EncodeCert(is.Cert)), keyPEM: string(keyPEM)}
		sh.clients[role] = p
		writes = append(writes, struct{ name, value string }{b.names.ClientKey(role), p.keyPEM}, struct{ name, value string }{b.names.ClientCert(role), p.certPEM})
	}
	// A replaced CA is trusted alone: FORCE_REGENERATE is the immediate
	// cut-over (for a compromised key), unlike rotate-ca.
	// The old CA's CRL cannot be verified once it is no longer trusted, and
	// what it lists is refused anyway (its CA is gone): a new, empty CRL
	// signed by the new CA, numbered after the old one. Before the bundle,
	// so a node reading between the two writes can verify both.
	crl, err := b.f.freshCRL(ctx, &sh.ca)
	if err != nil {
		return nil, err
	}
	if crl != "" {
		sh.crlPEM = crl
		writes = append(writes, struct{ name, value string }{b.names.CRL(), crl})
	}
	doc, err := b.regeneratedState(ctx, &sh.ca, nodeCA.Cert, sh.crlPEM)
	if err != nil {
		return nil, err
	}
	sh.doc = doc
	writes = append(writes, struct{ name, value string }{b.names.Bundle(), doc})
	for _, w := range writes {
		if err := putOrCreate(ctx, b.f.Store, b.names, w.name, w.value); err != nil {
			return nil, err
		}
	}
	b.res.Items = append(b.res.Items, item("CA Certificate", Generated, b.where(b.names.CACert()), caCert),
		item("Node-issuing CA", Generated, b.where(b.names.NodeCACert()), nodeCA.Cert))
	for _, role := range pki.Roles {
		b.res.Items = append(b.res.Items, item(roleTitle(role), Generated, b.where(b.names.ClientCert(role)), sh.clients[role].cert))
	}
	return sh, nil
}

// putOrCreate writes a new current version, creating the secret when it
// does not exist yet.
func putOrCreate(ctx context.Context, st secretstore.Store, names Names, name, value string) error {
	err := st.Put(ctx, name, value)
	if errors.Is(err, secretstore.ErrNotExist) {
		err = st.Create(ctx, names.Secret(name, value))
		if errors.Is(err, secretstore.ErrExist) {
			err = st.Put(ctx, name, value)
		}
	}
	if err != nil {
		return fmt.Errorf("replace %s: %w", name, err)
	}
	return nil
}

// regeneratedState is the trust state of a replaced CA: trusting the new
// CA alone, signed by it. When this run can use the replaced CA's key, the
// replaced CA cross-signs the new one into the state's lineage, so nodes
// and clients holding the old state take the new one at their next refresh
// (whoever else holds the old key can sign nothing they take once they
// have). Without it, they refuse it, and each needs a bootstrap again or a
// new rnx-config.yml: said as a warning.
func (b *bootstrapper) regeneratedState(ctx context.Context, ca *pki.CA, nodeCA *x509.Certificate, crlPEM string) (string, error) {
	now := b.f.Now()
	var lineage []*x509.Certificate
	var version uint64
	if old, err := b.f.readState(ctx, b.scope()); err == nil && old.ca != nil {
		if signer, err := old.signer(ctx, &b.f); err == nil {
			if cross, err := pki.CrossSign(ca.Cert, signer, now); err == nil {
				lineage = []*x509.Certificate{old.ca}
				if old.doc != nil {
					lineage, version = old.doc.LineageCerts(), old.doc.Version
				}
				lineage = append(lineage, cross)
			}
		}
	}
	if lineage == nil {
		msg := "the replaced CA's key could not vouch for the new CA: nodes and clients that trust the replaced CA refuse the new trust state; bootstrap each node again and hand out new rnx configs"
		b.f.Log.Warn(msg)
		b.res.Warnings = append(b.res.Warnings, msg)
		lineage = []*x509.Certificate{ca.Cert}
	}
	version = max(version+1, uint64(now.Unix()))
	minCRL, _ := pki.PeekCRLNumber([]byte(crlPEM))
	t := pki.NewTrustState(b.names.Prefix, version, []*x509.Certificate{ca.Cert}, lineage, minCRL, now).WithNodeCAs(nodeCA)
	data, err := pki.SignTrust(ctx, t, ca)
	return string(data), err
}
