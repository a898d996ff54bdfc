// Package login is rnx's side of `rnx login` (issue 26): it makes a key
// that never leaves the machine, proves the user's AWS identity to the
// fleet's issuer bound to that key and fleet, and keeps the short-lived
// certificate it gets next to the rnx config, where every rnx command
// picks it up (Apply).
package login

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/awsident"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/issuer"
	"github.com/ehsaniara/joblet/internal/pki"
)

// WarnBefore is how long before its certificate expires rnx starts saying
// so on every command.
const WarnBefore = 30 * time.Minute

// Path is where the certificate `rnx login` got for the config at cfgPath
// lives: beside it, named after it.
func Path(cfgPath string) string {
	return strings.TrimSuffix(cfgPath, filepath.Ext(cfgPath)) + ".login.pem"
}

// Cert is a person's certificate with its key, and who it names.
type Cert struct {
	Chain, Key string // PEM: the certificate then the user-issuing CA; the key
	Person     string
	Role       pki.Role
	Serial     string // hex, as certs revoke --serial takes it
	Expires    time.Time
}

// Options say where to log in and as whom.
type Options struct {
	// Issuer is the issuer's HTTPS URL; IssuerCA (PEM) what its
	// certificate chains to beside the system's roots.
	Issuer, IssuerCA string
	// AWS holds the person's credentials and STS settings (the default
	// chain: environment, profile, SSO).
	AWS aws.Config
	// Lifetime asked for (0: the issuer's default); the issuer caps it.
	Lifetime time.Duration
	Now      func() time.Time
}

// Do logs in: two round trips to the issuer (which fleet it issues for
// and what it trusts, then the proof), the issuer making one to STS. It
// returns the certificate and the issuer's greeting (TakeTrust).
func Do(ctx context.Context, o Options) (*Cert, *issuer.Hello, error) {
	client, hello, err := greet(ctx, o.Issuer, o.IssuerCA)
	if err != nil {
		return nil, nil, err
	}
	c, err := obtain(ctx, client, hello, o)
	return c, hello, err
}

func obtain(ctx context.Context, client *http.Client, hello *issuer.Hello, o Options) (*Cert, error) {
	key, err := pki.GenerateKey(pki.ECDSAP256, nil)
	if err != nil {
		return nil, err
	}
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return nil, err
	}
	if o.AWS.Region == "" {
		o.AWS.Region = "us-east-1"
	}
	proof, err := awsident.Prove(ctx, o.AWS, hello.Fleet, awsident.KeyHash(der), o.Now())
	if err != nil {
		return nil, fmt.Errorf("sign the proof of your AWS identity (are AWS credentials set up? `aws sts get-caller-identity` checks): %w", err)
	}
	req := issuer.Request{Proof: *proof, PublicKey: der}
	if o.Lifetime > 0 {
		req.Lifetime = o.Lifetime.String()
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	var resp issuer.Response
	if err := call(ctx, client, http.MethodPost, o.Issuer, body, &resp); err != nil {
		return nil, err
	}
	leaf, _, err := pki.ParseChain([]byte(resp.Chain))
	if err != nil {
		return nil, fmt.Errorf("the issuer's answer: %w", err)
	}
	got, _ := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	if !bytes.Equal(got, der) {
		return nil, errors.New("the issuer sent a certificate for another key: refused")
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	return parse(resp.Chain, string(keyPEM))
}

// greet asks the issuer at issuerURL which fleet it issues for.
func greet(ctx context.Context, issuerURL, issuerCA string) (*http.Client, *issuer.Hello, error) {
	u, err := url.Parse(issuerURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return nil, nil, fmt.Errorf("issuer %q: give the issuer's https:// URL (the operator's `joblet issuer` or its Lambda function URL)", issuerURL)
	}
	client, err := httpClient(issuerCA)
	if err != nil {
		return nil, nil, err
	}
	var hello issuer.Hello
	if err := call(ctx, client, http.MethodGet, issuerURL, nil, &hello); err != nil {
		return nil, nil, err
	}
	if hello.Fleet == "" {
		return nil, nil, fmt.Errorf("%s did not say which fleet it issues for: is it a joblet issuer?", issuerURL)
	}
	return client, &hello, nil
}

// PeopleNode is a node entry of a config for people (no certificate of
// its own) at address, trusting what the issuer's signed trust state
// verifies to: from the pinned root alone when pin is given, else from
// the roots the issuer sends.
func PeopleNode(ctx context.Context, issuerURL, issuerCA, address string, pin *pki.Pin) (*config.Node, error) {
	_, hello, err := greet(ctx, issuerURL, issuerCA)
	if err != nil {
		return nil, err
	}
	roots, err := pki.ParseCerts([]byte(hello.Trust))
	if err != nil {
		return nil, fmt.Errorf("the issuer sent no trust for fleet %s (%v): is its user-issuing CA made (joblet certs user-ca)?", hello.Fleet, err)
	}
	refuse := func(why string) (*config.Node, error) {
		return nil, fmt.Errorf("the fleet the issuer at %s serves %s: refused, nothing written", issuerURL, why)
	}
	if pin != nil && !slices.ContainsFunc(roots, pin.Matches) {
		return refuse(fmt.Sprintf("trusts no root with fingerprint %s", pin))
	}
	// What the config trusts is what the signed trust state verifies to,
	// from the pinned root alone when there is a pin (the issuer's roots
	// otherwise): a root the issuer adds beside the pinned one, or a state
	// it signed with a root of its own, reaches nothing.
	if hello.TrustState != "" {
		anchors := roots
		if pin != nil {
			t, err := pki.PeekTrust([]byte(hello.TrustState), hello.Fleet)
			if err != nil {
				return refuse(fmt.Sprintf("has a trust state that does not parse (%v)", err))
			}
			a := t.PinAnchor(*pin)
			if a == nil {
				return refuse(fmt.Sprintf("has a signed trust state that never had the root %s", pin))
			}
			anchors = []*x509.Certificate{a}
		}
		t, err := pki.VerifyTrust([]byte(hello.TrustState), hello.Fleet, anchors, nil, nil)
		if err != nil {
			return refuse(fmt.Sprintf("has a trust state the root(s) it names do not vouch for (%v)", err))
		}
		if pin == nil && !sameCerts(t.RootCerts(), roots) {
			return refuse("sends a trust state that does not match the roots it sent")
		}
		roots = t.RootCerts()
	} else if pin != nil {
		// A fleet from before the signed trust state: the pinned root.
		roots = roots[slices.IndexFunc(roots, pin.Matches):][:1]
	}
	return &config.Node{Address: address, CA: string(pki.EncodeCerts(roots...)), Trust: hello.TrustState}, nil
}

// TakeTrust moves every node of cfg that holds a signed trust state to
// the issuer's, when it is newer and signed by a root the node trusts (or
// one its lineage reaches): a login keeps a people's config current
// through CA rotations, as `rnx config refresh` does for a role's. It says
// whether anything changed; anything else is left as it was.
func TakeTrust(cfg *config.Rnx, hello *issuer.Hello) bool {
	if hello == nil || hello.TrustState == "" {
		return false
	}
	changed := false
	for _, n := range cfg.Nodes {
		held, err := pki.PeekTrust([]byte(n.Trust), hello.Fleet)
		if err != nil || n.Trust == hello.TrustState {
			continue
		}
		st, err := pki.VerifyTrust([]byte(hello.TrustState), hello.Fleet, held.RootCerts(), held, nil)
		if err != nil || st.Version <= held.Version {
			continue
		}
		n.CA, n.Trust = string(pki.EncodeCerts(st.RootCerts()...)), hello.TrustState
		changed = true
	}
	return changed
}

// sameCerts: a and b hold the same certificates, in any order.
func sameCerts(a, b []*x509.Certificate) bool {
	in := func(x []*x509.Certificate, c *x509.Certificate) bool {
		return slices.ContainsFunc(x, c.Equal)
	}
	for _, c := range a {
		if !in(b, c) {
			return false
		}
	}
	for _, c := range b {
		if !in(a, c) {
			return false
		}
	}
	return true
}

// call makes one request to the issuer and decodes its JSON answer; a
// refusal comes back as the issuer's own words.
func call(ctx context.Context, client *http.Client, method, u string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(body))
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("reach the issuer: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return fmt.Errorf("read the issuer's answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("the issuer refused (HTTP %d): %s", resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("the issuer's answer is not what a joblet issuer sends: %w", err)
	}
	return nil
}

// httpClient trusts issuerCA alone when given (the issuer's own PKI: no
// public CA can stand in for it), else the system's roots; it follows no
// redirect, so the proof goes to the issuer named and nowhere else.
func httpClient(issuerCA string) (*http.Client, error) {
	var pool *x509.CertPool
	if issuerCA != "" {
		pool = x509.NewCertPool()
		if !pool.AppendCertsFromPEM([]byte(issuerCA)) {
			return nil, errors.New("login.issuerCA holds no PEM certificate")
		}
	} else if p, err := x509.SystemCertPool(); err == nil && p != nil {
		pool = p
	} else {
		return nil, fmt.Errorf("no system CA certificates to check the issuer with (%v): give --issuer-ca", err)
	}
	return &http.Client{
		Timeout:       30 * time.Second,
		Transport:     &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, Proxy: http.ProxyFromEnvironment},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

func parse(chain, key string) (*Cert, error) {
	leaf, _, err := pki.ParseChain([]byte(chain))
	if err != nil {
		return nil, err
	}
	p, ok, err := pki.PersonOf(leaf)
	if err != nil || !ok {
		return nil, fmt.Errorf("not a person's certificate (%v)", err)
	}
	return &Cert{Chain: chain, Key: key, Person: p.ARN, Role: p.Role, Serial: pki.SerialHex(leaf.SerialNumber), Expires: leaf.NotAfter}, nil
}

// Save writes c at path, readable by its owner only.
func Save(path string, c *Cert) error {
	return atomicfile.WriteFile(path, []byte(c.Chain+c.Key), 0o600)
}

// Load reads the certificate Save wrote.
func Load(path string) (*Cert, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	chain, key := pki.SplitPEM(b)
	c, err := parse(string(chain), string(key))
	if err != nil {
		return nil, fmt.Errorf("%s: %w: run `rnx login` again", path, err)
	}
	if _, err := pki.ParseKey(key); err != nil {
		return nil, fmt.Errorf("%s: %w: run `rnx login` again", path, err)
	}
	return c, nil
}

// Apply puts the login certificate beside cfgPath into every node of cfg.
// It returns a warning when the certificate expires soon, and an error
// that says `rnx login` when it expired or a people's config has none.
func Apply(cfg *config.Rnx, cfgPath string, now time.Time) (warning string, err error) {
	path := Path(cfgPath)
	c, err := Load(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if cfg.Login != nil && needsLogin(cfg) {
			return "", fmt.Errorf("this config is for people (it has no certificate of its own): run `rnx login` to get one from %s", cfg.Login.Issuer)
		}
		return "", nil
	case err != nil:
		return "", err
	}
	if !now.Before(c.Expires) {
		return "", fmt.Errorf("your login certificate (%s, %s) expired at %s: run `rnx login` (or remove %s to use the config's own certificate)",
			c.Person, c.Role, c.Expires.Local().Format(time.Kitchen), path)
	}
	for _, n := range cfg.Nodes {
		n.Cert, n.Key = c.Chain, c.Key
	}
	if left := c.Expires.Sub(now); left < WarnBefore {
		warning = fmt.Sprintf("your login certificate (%s, %s) expires in %s: run `rnx login`", c.Person, c.Role, left.Round(time.Minute))
	}
	return warning, nil
}

func needsLogin(cfg *config.Rnx) bool {
	for _, n := range cfg.Nodes {
		if n.Cert == "" {
			return true
		}
	}
	return false
}
