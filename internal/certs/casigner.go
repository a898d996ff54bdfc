package certs

import (
	"cmp"
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"

	"github.com/ehsaniara/joblet/internal/pki"
)

// KMSKey is a CA key held in AWS KMS (kmssigner.Signer in production).
type KMSKey interface {
	crypto.Signer
	KeyID() string // the key's ARN
}

// CAKeyRef is where a fleet's root key lives, one value from the flag to
// the KMS call: the store (<prefix>/ca-key) when KeyID is empty, else the
// AWS KMS key KeyID (an ARN, id or alias as given; <prefix>/ca-kms-key and
// a node's config record its ARN) in Region. Make it with KMSKeyRef.
type CAKeyRef struct {
	KeyID  string
	Region string // the KMS key's region (KMSKeyRef: an ARN's own, else the store's)
}

// InKMS reports whether the root key is in AWS KMS.
func (r CAKeyRef) InKMS() bool { return r.KeyID != "" }

// KMSOpener opens the KMS key a reference names, in its region.
type KMSOpener func(ctx context.Context, key CAKeyRef) (KMSKey, error)

// KMSKeyRef is the reference to the KMS key id (an ARN, id or alias; ""
// for the store), the one place a key's region is decided: an ARN names
// its own region, anything else is in storeRegion (the region of the
// Secrets Manager store the command opened, as the key was always looked
// up in).
func KMSKeyRef(id, storeRegion string) CAKeyRef {
	if id == "" {
		return CAKeyRef{}
	}
	region := storeRegion
	if p := strings.SplitN(id, ":", 6); len(p) == 6 && p[0] == "arn" && p[2] == "kms" && p[3] != "" {
		region = p[3]
	}
	return CAKeyRef{KeyID: id, Region: region}
}

// kmsKey is the reference to a KMS key id the fleet recorded (ca-kms-key,
// a rotation record, a node's config: ARNs, so in their own region).
func (f *Fleet) kmsKey(id string) CAKeyRef { return KMSKeyRef(id, f.KMSRegion) }

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
// (parsed locally) or a KMS key reference (opened through f's OpenKMS
// only when no local key matches, and only when it is set). kmsID is the
// KMS key's ARN when the signer is a KMS key.
func (f *Fleet) caSigner(ctx context.Context, cert *x509.Certificate, keyPEMs []string, kmsRefs []CAKeyRef) (signer crypto.Signer, kmsID string, err error) {
	n, open := f.names(), f.OpenKMS
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
	var tried, given []string
	for _, ref := range kmsRefs {
		if !ref.InKMS() {
			continue
		}
		given = append(given, ref.KeyID)
		if open == nil {
			continue
		}
		key, err := open(ctx, ref)
		if err != nil {
			return nil, "", err
		}
		if samePublicKey(cert, key) {
			return key, key.KeyID(), nil
		}
		tried = append(tried, ref.KeyID)
	}
	switch {
	case len(tried) > 0:
		return nil, "", fmt.Errorf("%w: %s is not the certificate of KMS key %v (%s) nor of %s (a rotation step may be in progress; re-run)", ErrInconsistentStore, n.CACert(), tried, n.CAKMSKey(), n.CAKey())
	case len(given) > 0 && open == nil:
		ref := given[0]
		return nil, "", fmt.Errorf("%w: this fleet's CA key is in AWS KMS (%s names %s), and this node was not given it: set JOBLET_CA_KMS_KEY_ID=%s (or --ca-kms-key-id). %s",
			ErrCAMode, n.CAKMSKey(), ref, ref, caModes)
	case cmp.Or(keyPEMs...) != "":
		return nil, "", fmt.Errorf("%w: %s is not the certificate of %s (a rotation step may be in progress; re-run)", ErrInconsistentStore, n.CACert(), n.CAKey())
	}
	return nil, "", fmt.Errorf("%w: %s exists but neither %s nor %s does, so nothing can be signed with it. "+
		"Restore the CA's key (as %s, or its KMS key ARN as %s), or start a new CA with FORCE_REGENERATE=true (every client then needs the new config)",
		ErrInconsistentStore, n.CACert(), n.CAKey(), n.CAKMSKey(), n.CAKey(), n.CAKMSKey())
}
