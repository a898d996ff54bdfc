package awsident

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
)

// ErrProof: a proof was refused before anything was sent to STS; the
// message names the check.
var ErrProof = errors.New("the identity proof is refused")

// Want is what a verifier requires of a proof.
type Want struct {
	// Audience is the fleet the proof must be bound to.
	Audience string
	// KeyHash is KeyHash of the public key asked for.
	KeyHash string
	// Config resolves the STS endpoint per region (Endpoint): the SDK's
	// settings of the verifier, never the caller's.
	Config aws.Config
	// Now is the verifier's clock.
	Now time.Time
}

// forwarded are the headers a checked proof is sent to STS with: the
// signed ones a GetCallerIdentity needs, and the signature itself.
var forwarded = []string{"Authorization", "Content-Type", "X-Amz-Date", "X-Amz-Security-Token", AudienceHeader, KeyHeader}

// required are the headers the signature must cover.
var required = []string{"host", "content-type", "x-amz-date", strings.ToLower(AudienceHeader), strings.ToLower(KeyHeader)}

// Verify checks p strictly against want and returns the request to send to
// STS (Call): a POST of exactly Body to the STS endpoint the SDK resolves
// for the region the signature names, with the binding headers signed and
// equal to want's, signed within MaxAge of want.Now. Nothing in p chooses
// the host: a proof naming any other URL is refused.
func Verify(ctx context.Context, p *Proof, want Want) (*http.Request, error) {
	refuse := func(format string, a ...any) (*http.Request, error) {
		return nil, fmt.Errorf("%w: %s", ErrProof, fmt.Sprintf(format, a...))
	}
	if p == nil {
		return refuse("no proof")
	}
	if p.Method != http.MethodPost {
		return refuse("method %q, want POST", p.Method)
	}
	if p.Body != Body {
		return refuse("the body is not exactly a GetCallerIdentity request")
	}
	one := func(name string) (string, error) {
		var vals []string
		for k, v := range p.Headers {
			if strings.EqualFold(k, name) {
				vals = append(vals, v...)
			}
		}
		if len(vals) != 1 {
			return "", fmt.Errorf("%w: header %s: %d values, want exactly one", ErrProof, name, len(vals))
		}
		return vals[0], nil
	}
	auth, err := one("Authorization")
	if err != nil {
		return nil, err
	}
	scope, signed, err := parseAuthorization(auth)
	if err != nil {
		return nil, err
	}
	for _, h := range required {
		if !slices.Contains(signed, h) {
			return refuse("the signature does not cover %s (signed: %s)", h, strings.Join(signed, ";"))
		}
	}
	// The credential scope: KEY/DATE/REGION/sts/aws4_request.
	if len(scope) != 5 || scope[3] != "sts" || scope[4] != "aws4_request" {
		return refuse("the signature's scope is not STS's")
	}
	region := scope[2]
	ep, err := Endpoint(ctx, want.Config, region)
	if err != nil {
		return refuse("%v", err)
	}
	u, err := url.Parse(p.URL)
	if err != nil {
		return refuse("URL: %v", err)
	}
	if u.Scheme != ep.Scheme || u.Host != ep.Host || u.Path != ep.Path || u.RawQuery != "" || u.User != nil || u.Fragment != "" {
		return refuse("the request goes to %s, not to STS in %s (%s)", u.Redacted(), region, ep)
	}
	if host, err := one("Host"); err != nil || host != ep.Host {
		return refuse("header Host %q is not %s", host, ep.Host)
	}
	if ct, err := one("Content-Type"); err != nil || ct != contentType {
		return refuse("header Content-Type %q", ct)
	}
	if aud, err := one(AudienceHeader); err != nil || aud != want.Audience {
		return refuse("the proof is for audience %q, not this fleet (%q)", aud, want.Audience)
	}
	if kh, err := one(KeyHeader); err != nil || !strings.EqualFold(kh, want.KeyHash) {
		return refuse("the proof is bound to another public key (%s), not the one a certificate is asked for", kh)
	}
	date, err := one("X-Amz-Date")
	if err != nil {
		return nil, err
	}
	at, err := time.Parse("20060102T150405Z", date)
	if err != nil {
		return refuse("X-Amz-Date %q: %v", date, err)
	}
	if d := want.Now.Sub(at); d > MaxAge || d < -MaxAge {
		return refuse("signed at %s, more than %s from now (%s): sign a new one (check the clock)", at.Format(time.RFC3339), MaxAge, want.Now.UTC().Format(time.RFC3339))
	}
	if scope[1] != at.Format("20060102") {
		return refuse("the signature's date %s is not X-Amz-Date's", scope[1])
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.String(), strings.NewReader(Body))
	if err != nil {
		return nil, err
	}
	for _, h := range forwarded {
		if v, err := one(h); err == nil {
			req.Header.Set(h, v)
		}
	}
	return req, nil
}

// parseAuthorization splits an AWS4-HMAC-SHA256 Authorization header into
// its credential scope and signed header names.
func parseAuthorization(v string) (scope, signed []string, err error) {
	alg, rest, ok := strings.Cut(v, " ")
	if !ok || alg != "AWS4-HMAC-SHA256" {
		return nil, nil, fmt.Errorf("%w: Authorization is not an AWS4-HMAC-SHA256 signature", ErrProof)
	}
	for _, part := range strings.Split(rest, ",") {
		k, val, _ := strings.Cut(strings.TrimSpace(part), "=")
		switch k {
		case "Credential":
			scope = strings.Split(val, "/")
		case "SignedHeaders":
			signed = strings.Split(val, ";")
		}
	}
	if scope == nil || signed == nil {
		return nil, nil, fmt.Errorf("%w: Authorization lacks Credential or SignedHeaders", ErrProof)
	}
	return scope, signed, nil
}

// Identity is who STS says signed a proof.
type Identity struct {
	ARN, Account, UserID string
}

// Call sends req (from Verify) to STS with client, following no redirect,
// and returns the identity STS answers with, or STS's refusal.
func Call(client *http.Client, req *http.Request) (*Identity, error) {
	c := *client
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("ask STS who signed the proof: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("read STS's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		// STS answers <ErrorResponse><Error>; EC2-style services (and moto
		// for some) <Response><Errors><Error>.
		var e struct {
			Code    string `xml:"Error>Code"`
			Message string `xml:"Error>Message"`
			Codes   string `xml:"Errors>Error>Code"`
			Msgs    string `xml:"Errors>Error>Message"`
		}
		xml.Unmarshal(body, &e)
		if e.Code == "" {
			e.Code, e.Message = e.Codes, e.Msgs
		}
		if e.Code == "" {
			e.Message = strings.TrimSpace(string(body[:min(len(body), 300)]))
		}
		return nil, fmt.Errorf("%w: STS refused it (HTTP %d %s: %s)", ErrProof, resp.StatusCode, e.Code, e.Message)
	}
	var ok struct {
		ARN     string `xml:"GetCallerIdentityResult>Arn"`
		Account string `xml:"GetCallerIdentityResult>Account"`
		UserID  string `xml:"GetCallerIdentityResult>UserId"`
	}
	if err := xml.Unmarshal(body, &ok); err != nil || ok.ARN == "" {
		return nil, fmt.Errorf("STS's answer names no caller (%v)", err)
	}
	return &Identity{ARN: ok.ARN, Account: ok.Account, UserID: ok.UserID}, nil
}
