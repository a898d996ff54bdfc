// Package kmssigner is a crypto.Signer whose private key never leaves AWS
// KMS: Public comes from kms:GetPublicKey (once), each Sign is one kms:Sign
// call over the digest crypto/x509 computed. crypto/x509 signs certificates
// and CRLs with it as with a local key.
package kmssigner

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/service/kms"
	"github.com/aws/aws-sdk-go-v2/service/kms/types"
	"github.com/aws/smithy-go"

	"github.com/ehsaniara/joblet/internal/awsconf"
)

// API is the part of the KMS client the signer uses.
type API interface {
	GetPublicKey(ctx context.Context, in *kms.GetPublicKeyInput, opts ...func(*kms.Options)) (*kms.GetPublicKeyOutput, error)
	Sign(ctx context.Context, in *kms.SignInput, opts ...func(*kms.Options)) (*kms.SignOutput, error)
}

// Signer signs with one asymmetric KMS key (ECC_NIST_P256, RSA_2048,
// RSA_3072 or RSA_4096; usage SIGN_VERIFY).
type Signer struct {
	api     API
	arn     string // as KMS resolved it
	spec    types.KeySpec
	pub     crypto.PublicKey
	timeout time.Duration
}

// Open builds a KMS client from the default AWS configuration (endpoint
// override: AWS_ENDPOINT_URL_KMS) and opens the key.
func Open(ctx context.Context, o awsconf.Options, keyID string) (*Signer, error) {
	if o.Region == "" {
		return nil, fmt.Errorf("no AWS region for the KMS CA key %s: set --region, EC2_REGION or AWS_REGION", keyID)
	}
	cfg, err := awsconf.Load(ctx, o)
	if err != nil {
		return nil, err
	}
	return New(ctx, kms.NewFromConfig(cfg), keyID)
}

// New reads the key's public half and checks that it can sign
// certificates.
func New(ctx context.Context, api API, keyID string) (*Signer, error) {
	if keyID == "" {
		return nil, errors.New("no KMS key id given")
	}
	out, err := api.GetPublicKey(ctx, &kms.GetPublicKeyInput{KeyId: aws.String(keyID)})
	if err != nil {
		return nil, explain("kms:GetPublicKey", keyID, err)
	}
	if out.KeyUsage != types.KeyUsageTypeSignVerify {
		return nil, fmt.Errorf("KMS key %s (%s, usage %q) cannot sign certificates: the CA needs an asymmetric key with usage SIGN_VERIFY (ECC_NIST_P256, RSA_2048 or RSA_4096)", keyID, firstSpec(out), out.KeyUsage)
	}
	pub, err := x509.ParsePKIXPublicKey(out.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("KMS key %s: public key: %w", keyID, err)
	}
	// The spec follows from the public key itself (older answers carry
	// only the deprecated CustomerMasterKeySpec).
	var spec types.KeySpec
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() {
			spec = types.KeySpecEccNistP256
		}
	case *rsa.PublicKey:
		spec = map[int]types.KeySpec{2048: types.KeySpecRsa2048, 3072: types.KeySpecRsa3072, 4096: types.KeySpecRsa4096}[k.N.BitLen()]
	}
	if spec == "" {
		return nil, fmt.Errorf("KMS key %s is %s: use ECC_NIST_P256, RSA_2048 or RSA_4096 (what TLS clients and openssl verify everywhere)", keyID, firstSpec(out))
	}
	return &Signer{api: api, arn: aws.ToString(out.KeyId), spec: spec, pub: pub, timeout: time.Minute}, nil
}

// firstSpec is the key's spec as KMS answers it. AWS sets KeySpec (the
// deprecated CustomerMasterKeySpec is not read: the project's moto launcher
// answers KeySpec as AWS does).
func firstSpec(out *kms.GetPublicKeyOutput) string { return string(out.KeySpec) }

// Public is the key's public half.
func (s *Signer) Public() crypto.PublicKey { return s.pub }

// KeyID is the key as KMS names it (its ARN).
func (s *Signer) KeyID() string { return s.arn }

// Sign signs digest, which the caller hashed with opts.HashFunc(). KMS is
// told it is a digest (MessageType DIGEST), so it does not hash again.
// crypto.Signer has no context: each call is bounded by its own timeout,
// and the SDK's retries are bounded within it.
func (s *Signer) Sign(_ io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	alg, err := s.algorithm(opts)
	if err != nil {
		return nil, err
	}
	if len(digest) != opts.HashFunc().Size() {
		return nil, fmt.Errorf("kms sign: digest is %d bytes, %v needs %d", len(digest), opts.HashFunc(), opts.HashFunc().Size())
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.timeout)
	defer cancel()
	out, err := s.api.Sign(ctx, &kms.SignInput{KeyId: aws.String(s.arn), Message: digest,
		MessageType: types.MessageTypeDigest, SigningAlgorithm: alg})
	if err != nil {
		return nil, explain("kms:Sign", s.arn, err)
	}
	return out.Signature, nil
}

// algorithm maps what crypto/x509 asks for to KMS's signing algorithm.
func (s *Signer) algorithm(opts crypto.SignerOpts) (types.SigningAlgorithmSpec, error) {
	h := opts.HashFunc()
	_, pss := opts.(*rsa.PSSOptions)
	table := map[bool]map[crypto.Hash]types.SigningAlgorithmSpec{}
	switch s.pub.(type) {
	case *ecdsa.PublicKey:
		table[false] = map[crypto.Hash]types.SigningAlgorithmSpec{crypto.SHA256: types.SigningAlgorithmSpecEcdsaSha256,
			crypto.SHA384: types.SigningAlgorithmSpecEcdsaSha384, crypto.SHA512: types.SigningAlgorithmSpecEcdsaSha512}
	case *rsa.PublicKey:
		table[false] = map[crypto.Hash]types.SigningAlgorithmSpec{crypto.SHA256: types.SigningAlgorithmSpecRsassaPkcs1V15Sha256,
			crypto.SHA384: types.SigningAlgorithmSpecRsassaPkcs1V15Sha384, crypto.SHA512: types.SigningAlgorithmSpecRsassaPkcs1V15Sha512}
		table[true] = map[crypto.Hash]types.SigningAlgorithmSpec{crypto.SHA256: types.SigningAlgorithmSpecRsassaPssSha256,
			crypto.SHA384: types.SigningAlgorithmSpecRsassaPssSha384, crypto.SHA512: types.SigningAlgorithmSpecRsassaPssSha512}
	}
	if alg, ok := table[pss][h]; ok {
		return alg, nil
	}
	return "", fmt.Errorf("KMS key %s (%s) cannot sign with %v (PSS %v)", s.arn, s.spec, h, pss)
}

// explain names the action, the key and what to do.
func explain(action, keyID string, err error) error {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "AccessDeniedException":
			return fmt.Errorf("%s on KMS key %s: access denied: grant this role %s on the key (`joblet certs iam-policy` prints the policy): %w", action, keyID, action, err)
		case "NotFoundException":
			return fmt.Errorf("%s: KMS key %s does not exist in this region: check --ca-kms-key-id and the region: %w", action, keyID, err)
		case "DisabledException", "KMSInvalidStateException":
			return fmt.Errorf("%s: KMS key %s is disabled or pending deletion: enable it (aws kms enable-key / cancel-key-deletion): %w", action, keyID, err)
		case "ThrottlingException":
			return fmt.Errorf("%s on KMS key %s: throttled by KMS after retries with backoff: re-run later, or start fewer nodes at once: %w", action, keyID, err)
		}
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) && re.HTTPStatusCode() >= 500 {
		return fmt.Errorf("%s on KMS key %s: KMS answered HTTP %d after retries: re-run later (a re-run completes what this one stored): %w", action, keyID, re.HTTPStatusCode(), err)
	}
	return fmt.Errorf("%s on KMS key %s: %w", action, keyID, err)
}
