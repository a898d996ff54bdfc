// Package kms opens a fleet's CA key in AWS KMS for the lifecycle: the one
// place that joins certs to the KMS client, so binaries that never sign
// (rnx) link no KMS code.
package kms

import (
	"context"

	"github.com/ehsaniara/joblet/internal/awsconf"
	"github.com/ehsaniara/joblet/internal/certs"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/kmssigner"
)

// OpenerFor opens KMS keys for a fleet in a Secrets Manager store, each in
// the region its reference names (certs.CAKeyRef; the Fleet's KMSRegion,
// which the commands set to the store's, for a key named without one);
// nil for other stores (a KMS CA needs AWS, and certs refuses it with the
// reason).
func OpenerFor(ref config.StoreRef) certs.KMSOpener {
	if ref.Kind != config.ModeSecretsManager {
		return nil
	}
	return func(ctx context.Context, key certs.CAKeyRef) (certs.KMSKey, error) {
		return kmssigner.Open(ctx, awsconf.Options{Region: key.Region}, key.KeyID)
	}
}
