package certs

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"

	"github.com/ehsaniara/joblet/internal/pki"
)

// KMSKey is a CA key held in AWS KMS (kmssigner.Signer in production).
type KMSKey interface {
	crypto.Signer
	KeyID() string // the key's ARN
}

// KMSOpener opens a KMS key by id, ARN or alias.
type KMSOpener func(ctx context.Context, keyID string) (KMSKey, error)

// ErrCAMode marks a request that mixes the two places a CA key can live:
// the store (<prefix>/ca-key) or AWS KMS (<prefix>/ca-kms-key).
var ErrCAMode = errors.New("the CA key mode does not match the fleet's")

// caModes is the explanation every ErrCAMode message ends with.
const caModes = "A fleet keeps its CA private key in one place: in the store as <prefix>/ca-key (the default; every node that signs reads it), " +
	"or in AWS KMS (--ca-kms-key-id / JOBLET_CA_KMS_KEY_ID; <prefix>/ca-kms-key names the key, and no process ever holds the private key). " +
	"Every node of a fleet uses its mode; `joblet certs rotate-ca begin --ca-kms-key-id KEY` moves a fleet from the store to KMS without downtime (docs/ROTATION.md)"

// samePublicKey reports whether the certificate is for the signer's key.
func samePublicKey(cert *x509.Certificate, key crypto.Signer) bool {
	return pki.MatchesKey(cert, key) == nil
}

// caSigner finds the signer of cert among the stored keys: a ca-key PEM
// (parsed locally) or a ca-kms-key reference (opened through KMS only when
// no local key matches, and only when open is set). kmsID is the KMS key's
// ARN when the signer is a KMS key.
func caSigner(ctx context.Context, cert *x509.Certificate, keyPEMs, kmsRefs []string, open KMSOpener, n Names) (signer crypto.Signer, kmsID string, err error) {
	for _, k := range keyPEMs {
		if k == "" {
			continue
		}
		key, err := pki.ParseKey([]byte(k))
		if err != nil {
			return nil, "", fmt.Errorf("%w: %s does not hold a usable private key (%v)", ErrInconsistentStore, n.CAKey(), err)
		}
		if samePublicKey(cert, key) {
			return key, "", nil
		}
	}
	var tried []string
	for _, ref := range kmsRefs {
		if ref == "" || open == nil {
			continue
		}
		key, err := open(ctx, ref)
		if err != nil {
			return nil, "", err
		}
		if samePublicKey(cert, key) {
			return key, key.KeyID(), nil
		}
		tried = append(tried, ref)
	}
	switch {
	case len(tried) > 0:
		return nil, "", fmt.Errorf("%w: %s is not the certificate of KMS key %v (%s) nor of %s (a rotation step may be in progress; re-run)", ErrInconsistentStore, n.CACert(), tried, n.CAKMSKey(), n.CAKey())
	case cmp.Or(kmsRefs...) != "" && open == nil:
		ref := cmp.Or(kmsRefs...)
		return nil, "", fmt.Errorf("%w: this fleet's CA key is in AWS KMS (%s names %s), and this node was not given it: set JOBLET_CA_KMS_KEY_ID=%s (or --ca-kms-key-id). %s",
			ErrCAMode, n.CAKMSKey(), ref, ref, caModes)
	case cmp.Or(keyPEMs...) != "":
		return nil, "", fmt.Errorf("%w: %s is not the certificate of %s (a rotation step may be in progress; re-run)", ErrInconsistentStore, n.CACert(), n.CAKey())
	}
	return nil, "", fmt.Errorf("%w: %s exists but neither %s nor %s does, so nothing can be signed with it. "+
		"Restore the CA's key (as %s, or its KMS key ARN as %s), or start a new CA with FORCE_REGENERATE=true (every client then needs the new config)",
		ErrInconsistentStore, n.CACert(), n.CAKey(), n.CAKMSKey(), n.CAKey(), n.CAKMSKey())
}
