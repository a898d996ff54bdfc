package certs

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// claimRecord returns the value of the create-only record sec.Name, making
// it with build and creating it when it does not exist yet. Whoever creates
// it first decides the value: concurrent callers, and a re-run after a
// crash, all get the same one.
func claimRecord(ctx context.Context, st secretstore.Store, sec secretstore.Secret, build func() (string, error)) (string, error) {
	got, err := readBack(ctx, st, sec.Name)
	if err != nil {
		return "", err
	}
	if v := got[sec.Name]; v != "" {
		return v, nil
	}
	if sec.Value, err = build(); err != nil {
		return "", err
	}
	switch err := st.Create(ctx, sec); {
	case err == nil:
		return sec.Value, nil
	case errors.Is(err, secretstore.ErrExist):
		if got, err = readBack(ctx, st, sec.Name); err != nil {
			return "", err
		}
		return got[sec.Name], nil
	default:
		return "", fmt.Errorf("store %s: %w", sec.Name, err)
	}
}

// splitRecord splits a record into what precedes its certificate (a key, or
// a KMS key reference) and the certificate.
func splitRecord(rec, name string) (head, certPEM string, err error) {
	i := strings.Index(rec, "-----BEGIN CERTIFICATE-----")
	if i < 0 {
		return "", "", fmt.Errorf("%w: record %s holds no certificate", ErrInconsistentStore, name)
	}
	return rec[:i], rec[i:], nil
}
