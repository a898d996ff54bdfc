package pki

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"fmt"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"
)

// SignEnvelope signs body as payloadType with ca's key (the root's, a
// store key or AWS KMS) in a DSSE envelope, the format of the trust state:
// for the other documents only the root may change (the identity policy).
func SignEnvelope(ctx context.Context, payloadType string, body []byte, ca *CA) ([]byte, error) {
	es, err := dsse.NewEnvelopeSigner(rootSigner{ca})
	if err != nil {
		return nil, err
	}
	env, err := es.SignPayload(ctx, payloadType, body)
	if err != nil {
		return nil, fmt.Errorf("sign a %s with the root %s: %w", payloadType, Fingerprint(ca.Cert), err)
	}
	return json.MarshalIndent(env, "", "  ")
}

// OpenEnvelope returns the payload of data, a DSSE envelope of payloadType
// of at most max bytes, once a signature by one of roots verifies.
func OpenEnvelope(data []byte, payloadType string, max int, roots []*x509.Certificate) ([]byte, error) {
	if len(data) > max {
		return nil, fmt.Errorf("%d bytes, more than the %d a %s may hold", len(data), max, payloadType)
	}
	var env dsse.Envelope
	if err := json.Unmarshal(bytes.TrimSpace(data), &env); err != nil {
		return nil, fmt.Errorf("not a signed envelope: %w", err)
	}
	if env.PayloadType != payloadType {
		return nil, fmt.Errorf("payload type %q, want %q", env.PayloadType, payloadType)
	}
	var vs []dsse.Verifier
	for _, r := range roots {
		vs = append(vs, rootVerifier{r})
	}
	if len(vs) == 0 {
		return nil, fmt.Errorf("no root to check a %s against", payloadType)
	}
	ev, err := dsse.NewEnvelopeVerifier(vs...)
	if err != nil {
		return nil, err
	}
	if _, err := ev.Verify(context.Background(), &env); err != nil {
		return nil, fmt.Errorf("not signed by a root this reader trusts: %w", err)
	}
	return env.DecodeB64Payload()
}
