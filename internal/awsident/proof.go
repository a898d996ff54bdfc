// Package awsident proves an AWS identity to a verifier that holds no AWS
// secret, the way Vault's AWS auth and aws-iam-authenticator do: the prover
// signs an sts:GetCallerIdentity request with its ordinary credentials and
// hands it, unsent, to the verifier, which checks it strictly and sends it
// to STS itself; STS answers with the caller's ARN only if the signature
// holds. Two signed headers bind the request to one audience (the fleet)
// and one public key (the certificate it asks for), so a request captured
// on its way cannot be replayed for another fleet or another key.
//
// Pure request building and checking live here; the one network call is
// Call, which takes the request Verify returned.
package awsident

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/sts"
)

const (
	// AudienceHeader and KeyHeader are the binding headers, signed.
	AudienceHeader = "X-Joblet-Audience"
	KeyHeader      = "X-Joblet-Key-Sha256"
	// Body is the one request body a proof may carry.
	Body        = "Action=GetCallerIdentity&Version=2011-06-15"
	contentType = "application/x-www-form-urlencoded; charset=utf-8"
	// MaxAge bounds how long ago (or, for a fast clock, ahead) a proof may
	// have been signed: STS's own window for a signed request.
	MaxAge = 15 * time.Minute
)

// Proof is a signed GetCallerIdentity request, as the prover sends it to
// the verifier (JSON). It holds a signature, never a credential.
type Proof struct {
	Method  string              `json:"method"`
	URL     string              `json:"url"`
	Headers map[string][]string `json:"headers"`
	Body    string              `json:"body"`
}

// KeyHash is the SHA-256 of a public key's DER (PKIX) encoding, as the
// proof's KeyHeader carries it.
func KeyHash(pkixDER []byte) string {
	sum := sha256.Sum256(pkixDER)
	return hex.EncodeToString(sum[:])
}

// Endpoint is the STS endpoint the SDK resolves for region with cfg's
// settings (AWS_ENDPOINT_URL_STS, FIPS, dual-stack): the one host a proof
// for region may name. The prover and the verifier both ask the SDK, so
// nothing a caller sends adds a host.
func Endpoint(ctx context.Context, cfg aws.Config, region string) (*url.URL, error) {
	o := sts.NewFromConfig(cfg, func(o *sts.Options) { o.Region = region }).Options()
	if !validRegion(region) {
		return nil, fmt.Errorf("region %q is not an AWS region name", region)
	}
	// One partition: account IDs of aws, aws-cn and aws-us-gov are
	// separate namespaces, and the policy names accounts of its own.
	own := cfg.Region
	if own == "" {
		own = "us-east-1"
	}
	if PartitionOf(region) != PartitionOf(own) {
		return nil, fmt.Errorf("region %s is in the %s partition, not this configuration's (%s, %s)", region, PartitionOf(region), own, PartitionOf(own))
	}
	ep, err := o.EndpointResolverV2.ResolveEndpoint(ctx, sts.EndpointParameters{
		Region:       aws.String(region),
		Endpoint:     o.BaseEndpoint,
		UseFIPS:      aws.Bool(o.EndpointOptions.UseFIPSEndpoint == aws.FIPSEndpointStateEnabled),
		UseDualStack: aws.Bool(o.EndpointOptions.UseDualStackEndpoint == aws.DualStackEndpointStateEnabled),
	})
	if err != nil {
		return nil, fmt.Errorf("resolve the STS endpoint for %s: %w", region, err)
	}
	u := ep.URI
	if u.Path == "" {
		u.Path = "/"
	}
	return &u, nil
}

// PartitionOf is the AWS partition a region belongs to, by the prefixes
// AWS gives its partitions' regions.
func PartitionOf(region string) string {
	for _, p := range []struct{ prefix, partition string }{
		{"cn-", "aws-cn"}, {"us-gov-", "aws-us-gov"}, {"us-isob-", "aws-iso-b"}, {"us-iso-", "aws-iso"},
		{"eu-isoe-", "aws-iso-e"}, {"us-isof-", "aws-iso-f"}, {"eusc-", "aws-eusc"},
	} {
		if strings.HasPrefix(region, p.prefix) {
			return p.partition
		}
	}
	return "aws"
}

// validRegion: shaped as AWS names regions (us-east-1, cn-north-1,
// us-gov-west-1, us-isob-east-1): words of lower-case letters, then a
// number, so a region can never carry a host or a path into the endpoint,
// nor name another service's domain under amazonaws.com: "s3-accelerate",
// "s3-us-west-2" or "s3-external-1" would make sts.REGION.amazonaws.com
// the S3 bucket "sts", whoever owns it.
func validRegion(r string) bool {
	if len(r) < 3 || len(r) > 32 {
		return false
	}
	words := strings.Split(r, "-")
	if len(words) < 3 {
		return false
	}
	for i, w := range words {
		if w == "" {
			return false
		}
		for _, c := range w {
			if (i < len(words)-1 && !(c >= 'a' && c <= 'z')) || (i == len(words)-1 && !(c >= '0' && c <= '9')) {
				return false
			}
		}
	}
	return true
}

// Prove signs a GetCallerIdentity request for cfg's region with cfg's
// credentials, bound to audience and keyHash (KeyHash of the public key a
// certificate is asked for).
func Prove(ctx context.Context, cfg aws.Config, audience, keyHash string, now time.Time) (*Proof, error) {
	if cfg.Region == "" {
		return nil, fmt.Errorf("no AWS region: set AWS_REGION (any region: the proof is checked by that region's STS)")
	}
	ep, err := Endpoint(ctx, cfg, cfg.Region)
	if err != nil {
		return nil, err
	}
	creds, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return nil, fmt.Errorf("get your AWS credentials (the ones the aws CLI uses: a profile, SSO login, environment): %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.String(), strings.NewReader(Body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", contentType)
	req.Header.Set(AudienceHeader, audience)
	req.Header.Set(KeyHeader, keyHash)
	sum := sha256.Sum256([]byte(Body))
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, hex.EncodeToString(sum[:]), "sts", cfg.Region, now); err != nil {
		return nil, fmt.Errorf("sign the GetCallerIdentity request: %w", err)
	}
	p := &Proof{Method: req.Method, URL: req.URL.String(), Headers: map[string][]string{}, Body: Body}
	for k, v := range req.Header {
		p.Headers[k] = v
	}
	p.Headers["Host"] = []string{req.URL.Host}
	return p, nil
}
