// Package issuer turns a proof of an AWS identity into a person's
// short-lived client certificate (issue 26, `rnx login`): it checks the
// proof (awsident), asks STS who signed it, maps that identity to a role
// with the root-signed identity policy (idpolicy), and signs a certificate
// for the public key the proof is bound to with the user-issuing CA. The
// same code serves as an HTTPS handler on an operator's host and, later, as
// an AWS Lambda function; it keeps no state.
package issuer

import (
	"cmp"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"

	"github.com/ehsaniara/joblet/internal/awsident"
	"github.com/ehsaniara/joblet/internal/idpolicy"
	"github.com/ehsaniara/joblet/internal/pki"
)

// DefaultLifetime is a person's certificate's lifetime unless asked for
// less (a working day).
const DefaultLifetime = 8 * time.Hour

// MaxRequest bounds a request body: a proof and a public key.
const MaxRequest = 32 << 10

// Issuer issues persons' certificates for one fleet.
type Issuer struct {
	// Fleet is the audience proofs must be bound to (the store prefix).
	Fleet string
	// Material returns what the issuer signs and checks with, verified
	// from the root: read per request, or through Cached.
	Material func(context.Context) (*Material, error)
	// AWS resolves the STS endpoint per region: the issuer's own settings.
	AWS aws.Config
	// STS is the HTTP client proofs are sent to STS with.
	STS *http.Client
	// MaxLifetime caps what a caller may ask for (at most
	// pki.PersonMaxLifetime).
	MaxLifetime time.Duration
	Now         func() time.Time
	// Log gets one line per login: who got which role until when, or why
	// not (nil: none).
	Log *slog.Logger
	// MaxInFlight bounds the proofs sent to STS at once (default
	// DefaultInFlight): anyone can reach the issuer and make it call STS,
	// so a flood waits for a slot, within its request's deadline, rather
	// than multiplying outbound calls. Nobody is refused for arriving last.
	MaxInFlight int

	once     sync.Once
	inFlight chan struct{}
}

// DefaultInFlight is MaxInFlight's default.
const DefaultInFlight = 32

// Material is what the issuer signs and checks with.
type Material struct {
	// CA is the user-issuing CA, with its key.
	CA *pki.CA
	// Policy is the identity policy in force.
	Policy *idpolicy.Policy
	// Trust is what the fleet's nodes and clients trust (PEM), and
	// TrustState the root-signed state it comes from ("" before it): what
	// a people's config starts from (rnx config init --issuer).
	Trust, TrustState string
}

// Request is what rnx login sends.
type Request struct {
	Proof awsident.Proof `json:"proof"`
	// PublicKey is the PKIX DER of the key the certificate is for; the
	// proof's key header is its SHA-256.
	PublicKey []byte `json:"publicKey"`
	// Lifetime asked for ("" for DefaultLifetime).
	Lifetime string `json:"lifetime,omitempty"`
}

// Response is the certificate and who it names.
type Response struct {
	// Chain is the person's certificate and the user-issuing CA (PEM).
	Chain   string    `json:"chain"`
	Person  string    `json:"person"`
	Role    pki.Role  `json:"role"`
	Expires time.Time `json:"expires"`
}

// ErrRefused: the caller gets no certificate; the message says why
// (without echoing anything STS would not tell them).
var ErrRefused = errors.New("no certificate issued")

// Issue checks req and signs a certificate for the person it proves.
func (is *Issuer) Issue(ctx context.Context, req *Request) (*Response, error) {
	now := is.Now()
	pub, err := x509.ParsePKIXPublicKey(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("%w: the public key does not parse: %v", ErrRefused, err)
	}
	lifetime := DefaultLifetime
	if req.Lifetime != "" {
		if lifetime, err = time.ParseDuration(req.Lifetime); err != nil || lifetime <= 0 {
			return nil, fmt.Errorf("%w: lifetime %q: give a duration such as 4h", ErrRefused, req.Lifetime)
		}
	}
	limit := min(is.MaxLifetime, pki.PersonMaxLifetime)
	if limit <= 0 {
		limit = pki.PersonMaxLifetime
	}
	lifetime = min(lifetime, limit)
	want := awsident.Want{Audience: is.Fleet, KeyHash: awsident.KeyHash(req.PublicKey), Config: is.AWS, Now: now}
	sts, err := awsident.Verify(ctx, &req.Proof, want)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	is.once.Do(func() { is.inFlight = make(chan struct{}, cmp.Or(is.MaxInFlight, DefaultInFlight)) })
	select {
	case is.inFlight <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waited for a turn to ask STS: %w", ctx.Err())
	}
	id, err := awsident.Call(is.STS, sts.WithContext(ctx))
	<-is.inFlight
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	principal, err := idpolicy.Canonical(id.ARN)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	m, err := is.Material(ctx)
	if err != nil {
		return nil, fmt.Errorf("the issuer cannot read its CA or the identity policy: %w", err)
	}
	ca, pol := m.CA, m.Policy
	person, err := pol.Map(principal, id.UserID)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	cert, err := ca.IssuePerson(pub, pki.Person{ARN: person.Name, Role: person.Role}, now, lifetime)
	if err != nil {
		return nil, err
	}
	return &Response{
		Chain:  string(pki.EncodeCert(cert.Cert)) + string(pki.EncodeCert(ca.Cert)),
		Person: person.Name, Role: person.Role, Expires: cert.Cert.NotAfter,
	}, nil
}

// Hello is what a GET answers: the audience rnx login binds its proof to,
// and what the fleet trusts (for a people's config; rnx checks it against
// a pinned fingerprint when given one).
type Hello struct {
	Fleet      string `json:"fleet"`
	Trust      string `json:"trust,omitempty"`
	TrustState string `json:"trustState,omitempty"`
}

// ServeHTTP is the issuer as an HTTPS endpoint: POST a Request as JSON,
// get a Response; 403 with the reason when refused. GET says which fleet
// it issues for.
func (is *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet {
		h := Hello{Fleet: is.Fleet}
		if m, err := is.Material(r.Context()); err == nil {
			h.Trust, h.TrustState = m.Trust, m.TrustState
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(h)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST a login request", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxRequest))
	if err != nil {
		http.Error(w, "the request is larger than a login request can be", http.StatusRequestEntityTooLarge)
		return
	}
	var req Request
	if err := json.Unmarshal(body, &req); err != nil {
		http.Error(w, "not a login request: "+err.Error(), http.StatusBadRequest)
		return
	}
	resp, err := is.Issue(r.Context(), &req)
	if is.Log != nil {
		switch {
		case errors.Is(err, ErrRefused):
			is.Log.Warn("login refused", "from", r.RemoteAddr, "err", err)
		case err != nil:
			is.Log.Error("login failed", "from", r.RemoteAddr, "err", err)
		default:
			is.Log.Info("login", "person", resp.Person, "role", resp.Role, "expires", resp.Expires.UTC().Format(time.RFC3339), "from", r.RemoteAddr)
		}
	}
	switch {
	case errors.Is(err, ErrRefused):
		http.Error(w, err.Error(), http.StatusForbidden)
		return
	case err != nil:
		// The reason (a store's error, say) is the operator's, in the
		// log: a caller, who may be anyone, learns only that it failed.
		http.Error(w, "the issuer cannot issue a certificate now: its operator finds why in its log (msg=\"login failed\")", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(resp)
}

// Cached wraps a Material source so one read serves requests for ttl: a
// login costs the issuer's store nothing while it is warm, and a policy or
// CA change reaches it within ttl. A failed read is not kept.
func Cached(read func(context.Context) (*Material, error), ttl time.Duration, now func() time.Time) func(context.Context) (*Material, error) {
	var mu sync.Mutex
	var m *Material
	var at time.Time
	return func(ctx context.Context) (*Material, error) {
		mu.Lock()
		defer mu.Unlock()
		if m != nil && now().Sub(at) < ttl && now().Before(m.Policy.Expires) {
			return m, nil
		}
		got, err := read(ctx)
		if err != nil {
			return nil, err
		}
		m, at = got, now()
		return m, nil
	}
}
