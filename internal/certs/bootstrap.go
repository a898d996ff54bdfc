package certs

import (
	"bytes"
	"cmp"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// BootstrapOptions are one node's settings for a bootstrap; the fleet's
// (store, prefix, key type, lifetimes, KMS) are the Fleet's.
type BootstrapOptions struct {
	Home string // JOBLET_HOME; files go to Home/config
	// Mode decides the server certificate's lifetime (a shared store's
	// renew automatically: days) and whether this node is its fleet's
	// operator (embedded: it never just joins, and keeps the role keys).
	Mode  config.StoreMode
	Force bool // FORCE_REGENERATE: new CA and client certificates

	ListenAddress   string   // server.address in joblet-config.yml
	Port            int      // server.port and the port in client addresses
	ServerAddress   string   // this node's address: a SAN and the client address
	AdditionalNames []string // JOBLET_ADDITIONAL_NAMES, raw
	PublicAddress   string   // HOST[:PORT] of a load balancer: a SAN and the client address
	NodeID          string   // kept from an existing config when empty
	// FallbackNodeID names a node that has no id yet (the EC2 instance id);
	// a random id when empty.
	FallbackNodeID string
	// FallbackServerAddress is ServerAddress when neither this run nor the
	// node's config gives one (the primary IP).
	FallbackServerAddress string

	// Given marks the node settings this run gives even when empty (an
	// explicit empty value clears one); a non-empty field is given anyway.
	// The others are kept from the node's config (keep.go). Reconfigure
	// allows a given change that moves the node's address or port, changes
	// its node id, or drops or adds a name of its certificate; without it
	// such a re-run is refused.
	Given       NodeSetting
	Reconfigure bool

	// StoreRef is written to the server config so the running server can
	// refresh from the same store; RefreshInterval goes with it.
	StoreRef        config.StoreRef
	RefreshInterval time.Duration
	MetricsAddress  string // metrics.address; kept from the existing config when empty

	// CAKey in KMS puts the CA's private key in AWS KMS (opened with the
	// Fleet's OpenKMS): <prefix>/ca-key is then never read or written.
	CAKey CAKeyRef

	// MoveNode allows a node whose config names another store, or trusts
	// another fleet's CA, to be moved to this one (its old configs are
	// replaced). Without it such a bootstrap is refused with both named:
	// a re-run must never fork a node off its fleet silently.
	MoveNode bool

	// Retries and RetryDelay: how often to re-read a store found
	// inconsistent before reporting it; a rotation step moving two labels
	// can be seen half done for a moment. Default 3 times, 1s apart.
	Retries    int
	RetryDelay time.Duration

	// AwaitFirst is the first pause of a node that lost the fleet's first
	// claim before it reads what the winner wrote (default 700ms: the
	// winner's ten creates); AwaitStall how long it waits without progress
	// before it completes the fleet itself (default 5s).
	AwaitFirst, AwaitStall time.Duration
	// AwaitEmpty bounds the random pause of a node on Secrets Manager that
	// finds the store empty, before it looks again and, if it is still
	// empty, claims the fleet (awaitEmpty; default 2s, negative: no pause).
	// An operator's run (an embedded node, `certs init`) never pauses.
	AwaitEmpty time.Duration
}

// Item reports what happened to one certificate.
type Item struct {
	Name   string `json:"name"`
	Action string `json:"action"` // generated, retrieved, completed
	Where  string `json:"where"`
	CertInfo
}

// Result is what a bootstrap did. Its Warnings are reported there only,
// not logged as well: the command prints them once (text or --json).
type Result struct {
	Mode     config.StoreMode `json:"mode"`
	Store    string           `json:"store"`
	Prefix   string           `json:"prefix"`
	NodeID   string           `json:"nodeId"`
	Items    []Item           `json:"certificates"`
	Files    []string         `json:"files"`
	Warnings []string         `json:"warnings,omitempty"`
	// AddedNames are the names this re-run (--reconfigure) added to the
	// node's server certificate: the command reports them on stderr.
	AddedNames []string `json:"addedNames,omitempty"`
	// CAKMSKey is the ARN of the KMS key that holds the CA's private key
	// (KMS mode), empty when the key is in the store.
	CAKMSKey string `json:"caKmsKey,omitempty"`
}

// Actions of an Item.
const (
	Generated = "generated" // made by this run and stored
	Retrieved = "retrieved" // already in the store
	Completed = "completed" // a key found without its certificate; this run added the certificate
)

// shared is the fleet-wide material a bootstrap read from, or wrote to,
// the store.
type shared struct {
	ca    pki.CA // the root; its Key is nil on a joining node
	caPEM string
	// issuer signs this node's server certificate: the node-issuing CA, or
	// the root in a fleet made before it.
	issuer pki.CA
	trust  []*x509.Certificate // every trusted CA: the bundle, or the CA alone
	crlPEM string              // the revocation list, "" for none
	// doc is the signed trust state trust came from ("" for a fleet from
	// before it): kept in the node's and the clients' configs.
	doc string
	// clients are the role pairs to write client configs with: only for
	// the node that created the fleet (or replaced it), an embedded node,
	// or a fleet from before the node-issuing CA. nil: no client configs.
	clients map[pki.Role]pair
}

// trustPEM is what nodes and clients trust.
func (sh *shared) trustPEM() string { return string(pki.EncodeCerts(sh.trust...)) }

// chainPEM is a server certificate followed by the node-issuing CA that
// signed it (none when the root did), as TLS sends it: peers trust the
// root only.
func (sh *shared) chainPEM(leaf *x509.Certificate) string {
	return serverChainPEM(leaf, &sh.issuer, sh.ca.Cert)
}

// serverChainPEM is leaf, then issuer's certificate unless issuer is the
// root itself.
func serverChainPEM(leaf *x509.Certificate, issuer *pki.CA, root *x509.Certificate) string {
	if issuer.Cert.Equal(root) {
		return string(pki.EncodeCert(leaf))
	}
	return string(pki.EncodeCerts(leaf, issuer.Cert))
}

type pair struct {
	cert    *x509.Certificate
	certPEM string
	keyPEM  string
	key     crypto.Signer
}

// Bootstrap makes this node ready to serve: it reads the shared CA and role
// certificates from the store (creating them when the store is empty, or
// replacing them when Force is set), issues this node's server certificate
// and writes the server and client configs. Nothing local changes unless
// everything succeeded.
func (fl *Fleet) Bootstrap(ctx context.Context, o BootstrapOptions) (*Result, error) {
	f := fl.defaults()
	if err := secretstore.ValidatePrefix(f.Prefix); err != nil {
		return nil, err
	}
	// Before anything is read or written: a home others can write is not
	// this node's to trust.
	if err := config.CheckHome(o.Home); err != nil {
		return nil, err
	}
	configDir := filepath.Join(o.Home, "config")
	serverPath := filepath.Join(configDir, "joblet-config.yml")
	srvCfg, err := existingServerConfig(serverPath)
	if err != nil {
		return nil, err
	}
	lifetime := fl.ServerLifetime
	added, err := o.keep(srvCfg, &lifetime)
	if err != nil {
		return nil, err
	}
	if lifetime != 0 {
		f.ServerLifetime = lifetime
	}
	o.defaults()
	sans, err := o.serverSANs()
	if err != nil {
		return nil, err
	}

	res := &Result{Mode: o.Mode, Store: f.StoreDesc, Prefix: f.Prefix, AddedNames: added}
	if lifetime == 0 && o.Mode != config.ModeEmbedded {
		// Renewal is automatic in a shared store: server certificates
		// live days, not a year (pki.DefaultFleetServerLifetime).
		f.ServerLifetime = pki.DefaultFleetServerLifetime
	}
	b := &bootstrapper{f: f, o: o, names: f.names(), res: res, operator: o.Mode == config.ModeEmbedded, key: o.CAKey}
	if f.Pin != nil && o.Force {
		return nil, fmt.Errorf("%w: %s pins the fleet's root, and FORCE_REGENERATE replaces it: give one of them", ErrUsage, pinFlag)
	}
	if b.key.InKMS() && f.OpenKMS == nil {
		return nil, fmt.Errorf("%w: --ca-kms-key-id needs AWS (Secrets Manager mode)", ErrUsage)
	}
	// Before anything is created: a store of another fleet (or an empty
	// one) is not this installed node's, and is refused with nothing written.
	first, err := b.sameFleet(ctx, srvCfg)
	if err != nil {
		return nil, err
	}
	sh, err := b.shared(ctx, first)
	if err != nil {
		return nil, err
	}
	b.noteUnpinned(srvCfg, sh)
	// Before anything of this node is written: a name its node-issuing CA
	// may not sign for makes a certificate no client accepts.
	if err := b.checkNames(ctx, sh, sans); err != nil {
		return nil, err
	}

	serverKey, err := pki.GenerateKey(f.KeyType, nil)
	if err != nil {
		return nil, err
	}
	issued, err := sh.issuer.IssueServer(serverKey.Public(), sans, f.Now(), f.ServerLifetime)
	if err != nil {
		return nil, fmt.Errorf("issue server certificate: %w", err)
	}
	b.noteCapped("server certificate", issued)
	res.Items = append(res.Items, item("Server Certificate", Generated, "local ("+serverPath+")", issued.Cert))

	keyPEM, err := pki.EncodeKey(serverKey)
	if err != nil {
		return nil, err
	}
	srvCfg = b.serverConfig(srvCfg, sh.chainPEM(issued.Cert), string(keyPEM), sh)
	res.NodeID = srvCfg.Server.NodeID
	files, err := o.files(srvCfg, sh)
	if err != nil {
		return nil, err
	}
	switch {
	case sh.clients == nil:
		b.warnHeldClientKeys(configDir)
	case !b.operator && sh.issuer.Cert != sh.ca.Cert:
		msg := fmt.Sprintf("this node created the fleet, and its client configs in %s hold the role keys: copy them to the operator's machine and delete them here (a node needs none). To keep them off nodes altogether, create fleets with `joblet certs init` from the operator's machine", configDir)
		res.Warnings = append(res.Warnings, msg)
	}
	if err := os.MkdirAll(configDir, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", configDir, err)
	}
	if err := atomicfile.WriteAll(files); err != nil {
		return nil, err
	}
	for _, f := range files {
		res.Files = append(res.Files, f.Path)
	}
	return res, nil
}

// checkNames refuses a node whose server names fall outside what the
// fleet's node-issuing CA may sign for, naming the name and the flag that
// widens them. An operator's run (an embedded node, its own fleet's
// operator) widens them itself: naming the node is the operator's call.
func (b *bootstrapper) checkNames(ctx context.Context, sh *shared, sans pki.SANs) error {
	nc, ok := pki.NodeConstraintsOf(sh.issuer.Cert)
	if !ok || sh.issuer.Cert.Equal(sh.ca.Cert) {
		return nil
	}
	err := nc.Permits(sans)
	var np *pki.NotPermittedError
	if !errors.As(err, &np) {
		return err
	}
	if b.operator && sh.ca.Key != nil && sh.issuer.Key != nil {
		own, err := sansConstraints(sans)
		if err != nil {
			return err
		}
		keyPEM, err := pki.EncodeKey(sh.issuer.Key)
		if err != nil {
			return err
		}
		f := b.f
		f.PermitNames = f.PermitNames.Union(own)
		nca, err := f.ensureNodeCAFrom(ctx, b.names, map[string]string{b.names.NodeCAKey(): string(keyPEM), b.names.NodeCACert(): string(pki.EncodeCert(sh.issuer.Cert))}, &sh.ca, true)
		if err != nil {
			return fmt.Errorf("widen the node-issuing CA for %q: %w", np.Name, err)
		}
		sh.issuer = *nca
		b.res.Warnings = append(b.res.Warnings, fmt.Sprintf("the node-issuing CA was re-issued to permit %q, which this node's certificate names", np.Name))
		return nil
	}
	return fmt.Errorf("%w: this node's server certificate would name %q, outside the names the fleet's node-issuing CA may sign for (%s): clients would refuse it. Nothing was written. "+
		"Give the node only names inside them (--server-address, --public-address, --additional-names), or have the operator widen them with the root's key: `joblet certs node-ca --permit-server-names %s` (nodes move to the re-issued CA on their next refresh), then re-run",
		ErrUsage, np.Name, strings.Join(nc.Strings(), ", "), np.Name)
}

// shared reads (or creates, or with Force replaces) the fleet's shared
// material. A store seen inconsistent is read again a few times: a rotation
// step moving two labels can be seen half done for a moment. first, when
// not nil, is what the fleet check read: the first attempt uses it instead
// of reading the store again; a retry reads afresh.
func (b *bootstrapper) shared(ctx context.Context, first *state) (*shared, error) {
	if b.o.Force {
		if err := b.openKMS(ctx); err != nil {
			return nil, err
		}
		return b.regenerate(ctx)
	}
	for attempt := 0; ; attempt++ {
		b.res.Items, b.res.Warnings = nil, nil
		sh, err := b.ensure(ctx, first)
		if errors.Is(err, errJoined) {
			// It waited for the node creating the fleet, then joined it.
			sh, err = b.joined, nil
		}
		first = nil // the store may have moved
		if err == nil || !errors.Is(err, ErrInconsistentStore) || attempt >= b.o.Retries {
			return sh, err
		}
		b.f.Log.Info("the shared certificates look inconsistent; reading again", "err", err)
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(b.o.RetryDelay):
		}
	}
}

// serverConfig fills this node's server config (keeping the settings an
// operator added to an existing one) with its certificate, key, trust and
// where to refresh from.
func (b *bootstrapper) serverConfig(srvCfg *config.Server, certPEM, keyPEM string, sh *shared) *config.Server {
	o := b.o
	if srvCfg == nil {
		srvCfg = &config.Server{}
	}
	srvCfg.Version = config.RnxVersion
	srvCfg.Server.Address = o.ListenAddress
	srvCfg.Server.Port = o.Port
	srvCfg.Server.ServerAddress, srvCfg.Server.PublicAddress = o.ServerAddress, o.PublicAddress
	srvCfg.Server.AdditionalNames = nil
	for _, n := range o.AdditionalNames {
		srvCfg.Server.AdditionalNames = append(srvCfg.Server.AdditionalNames, strings.TrimSpace(n))
	}
	switch {
	case o.NodeID != "":
		srvCfg.Server.NodeID = o.NodeID
	case srvCfg.Server.NodeID == "" && o.FallbackNodeID != "":
		srvCfg.Server.NodeID = o.FallbackNodeID
	case srvCfg.Server.NodeID == "":
		srvCfg.Server.NodeID = newNodeID()
	}
	srvCfg.Security.ServerCert = certPEM
	srvCfg.Security.ServerKey = keyPEM
	srvCfg.Security.CACert = sh.trustPEM()
	srvCfg.Security.CRL = sh.crlPEM
	srvCfg.Security.TrustState = sh.doc
	srvCfg.Security.ServerLifetime = b.f.ServerLifetime.String()
	if o.RefreshInterval > 0 {
		srvCfg.Security.RefreshInterval = o.RefreshInterval.String()
	}
	srvCfg.Store = o.StoreRef
	srvCfg.Store.Prefix = b.f.Prefix
	srvCfg.Security.CAKMSKeyID = b.res.CAKMSKey
	if o.MetricsAddress != "" {
		srvCfg.Metrics.Address = o.MetricsAddress
	}
	return srvCfg
}

// sameFleet refuses to move an installed node to another fleet (a store
// that does not trust the CA the node trusts) unless MoveNode, or
// FORCE_REGENERATE, which replaces the CA on purpose. Moving the same CA to
// another store (an import into Secrets Manager) is not a fork: the node
// keeps its fleet, and a rotation keeps one CA in both trusts. It returns
// what it read (the join's read, nodeScope), for the bootstrap to use.
func (b *bootstrapper) sameFleet(ctx context.Context, existing *config.Server) (*state, error) {
	if existing == nil || b.o.MoveNode || b.o.Force {
		return nil, nil
	}
	trusted, err := pki.ParseCerts([]byte(existing.Security.CACert))
	if err != nil || len(trusted) == 0 {
		return nil, nil // nothing to compare with
	}
	// Read only, what this bootstrap reads first anyway (the join's read),
	// as patiently: a node run again in a burst (every node of a fleet
	// re-run at once) comes up through a throttle as a new one does.
	s, err := b.readPatiently(ctx, nodeScope)
	if errors.Is(err, secretstore.ErrAccessDenied) {
		return nil, nil // a policy from before the node-issuing CA: the bootstrap's own read decides
	}
	if err != nil {
		return nil, err
	}
	holds := "no fleet at all (it would create a new CA)"
	if s.vals[s.n.CACert()] != "" {
		// Only a whole, valid CA of its own makes a store another fleet;
		// anything broken is reported by the bootstrap itself, naming the
		// secret and the fix.
		if s.ca == nil || pki.CheckCA(s.ca, b.f.Now()) != nil || s.nodeCAErr != nil || s.trustErr != nil {
			return s, nil
		}
		for _, c := range trusted {
			for _, t := range s.trust {
				if sameCA(c, t) {
					return s, nil
				}
			}
		}
		holds = "another CA (" + pki.Fingerprint(s.ca) + ")"
	}
	now := b.o.StoreRef
	now.Prefix = b.f.Prefix
	return nil, fmt.Errorf("%w: this node (%s) belongs to the fleet of CA %s in %s, but this run resolved %s, which holds %s: "+
		"refusing to move the node to another fleet silently; nothing was written. Re-run against the node's store (%s), or pass --move-node to join this fleet on purpose (its configs are replaced)",
		ErrUsage, b.o.Home, pki.Fingerprint(trusted[0]), describeRef(existing.Store), describeRef(now), holds, storeFlags(existing.Store))
}

// sameCA reports whether two CA certificates are the same CA: the same
// subject and key (a root re-issued to allow the node-issuing CA under it
// is the same CA).
func sameCA(a, b *x509.Certificate) bool {
	return a.Equal(b) || (bytes.Equal(a.RawSubject, b.RawSubject) && bytes.Equal(a.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo))
}

// scope is what a bootstrap reads on its full path (bootstrapScope).
func (b *bootstrapper) scope() scope { return bootstrapScope(b.key) }

// openKMS opens the CA's KMS key (KMS mode), once: only the full path
// signs with the root, so a joining node needs no KMS access.
func (b *bootstrapper) openKMS(ctx context.Context) error {
	if !b.key.InKMS() || b.kms != nil {
		return nil
	}
	k, err := b.f.OpenKMS(ctx, b.key)
	if err != nil {
		return fmt.Errorf("open the CA's KMS key: %w", err)
	}
	b.kms, b.res.CAKMSKey = k, k.KeyID()
	return nil
}

// warnHeldClientKeys warns when a node that joined (and needs no client
// key) still has client configs from before: they hold role keys, and a
// stolen node would give them away.
func (b *bootstrapper) warnHeldClientKeys(dir string) {
	held, _ := filepath.Glob(filepath.Join(dir, "rnx-config*.yml"))
	if len(held) == 0 {
		return
	}
	msg := fmt.Sprintf("%s hold role client keys that a node does not need (a joining node writes none): move them to the operator's machine and delete them here; clients get configs with `rnx config init`", strings.Join(held, ", "))
	b.res.Warnings = append(b.res.Warnings, msg)
}

// describeRef names a store reference for humans.
func describeRef(r config.StoreRef) string {
	switch r.Kind {
	case config.ModeSecretsManager:
		return fmt.Sprintf("Secrets Manager in %s (prefix %s)", r.Region, cmp.Or(r.Prefix, DefaultPrefix))
	case config.ModeDir:
		return fmt.Sprintf("the directory store %s (prefix %s)", r.Dir, cmp.Or(r.Prefix, DefaultPrefix))
	}
	return "an unrecorded store"
}

// storeFlags are the settings that select a store reference.
func storeFlags(r config.StoreRef) string {
	switch r.Kind {
	case config.ModeSecretsManager:
		return fmt.Sprintf("USE_SECRETS_MANAGER=true EC2_REGION=%s SECRETS_PREFIX=%s", r.Region, cmp.Or(r.Prefix, DefaultPrefix))
	case config.ModeDir:
		return fmt.Sprintf("--store dir:%s SECRETS_PREFIX=%s", r.Dir, cmp.Or(r.Prefix, DefaultPrefix))
	}
	return "its original settings"
}

// defaults fills the node settings that have one.
func (o *BootstrapOptions) defaults() {
	if o.Port == 0 {
		o.Port = config.DefaultPort
	}
	if o.ServerAddress == "" && o.Given&GivenServerAddress == 0 {
		o.ServerAddress = o.FallbackServerAddress
	}
	if o.ListenAddress == "" {
		o.ListenAddress = "0.0.0.0"
	}
	if o.Mode == "" {
		o.Mode = config.ModeEmbedded
	}
	if o.Retries == 0 && o.RetryDelay == 0 {
		o.Retries, o.RetryDelay = 3, time.Second
	}
	if o.AwaitFirst == 0 {
		o.AwaitFirst = 700 * time.Millisecond
	}
	if o.AwaitStall == 0 {
		o.AwaitStall = 5 * time.Second
	}
	if o.AwaitEmpty == 0 {
		o.AwaitEmpty = 2 * time.Second
	}
}

// Validate checks the operator's settings before anything is read or
// written, so a bad value is refused with nothing touched.
func (o *BootstrapOptions) Validate() error {
	if _, err := o.serverSANs(); err != nil {
		return err
	}
	_, err := o.clientAddress()
	return err
}

// serverSANs: the defaults, this node's address, the load balancer's name
// and the additional names; any invalid entry is an error naming it.
func (o *BootstrapOptions) serverSANs() (pki.SANs, error) {
	names := append([]string{}, pki.DefaultSANNames...)
	if o.ServerAddress != "" {
		names = append(names, o.ServerAddress)
	}
	if o.PublicAddress != "" {
		host, _, err := splitPublic(o.PublicAddress)
		if err != nil {
			return pki.SANs{}, err
		}
		names = append(names, host)
	}
	names = append(names, o.AdditionalNames...)
	sans, err := pki.ParseSANs(names)
	if err != nil {
		return pki.SANs{}, fmt.Errorf("%w: server certificate names: %w", ErrUsage, err)
	}
	return sans, nil
}

// clientAddress is where rnx configs point: the load balancer when there is
// one, else this node.
func (o *BootstrapOptions) clientAddress() (string, error) {
	if o.PublicAddress != "" {
		host, port, err := splitPublic(o.PublicAddress)
		if err != nil {
			return "", err
		}
		if port == 0 {
			port = o.Port
		}
		return config.Address(host, port), nil
	}
	host := o.ServerAddress
	if host == "" {
		host = "localhost"
	}
	return config.Address(host, o.Port), nil
}

// splitPublic splits HOST[:PORT], accepting a bare IPv6 address.
func splitPublic(s string) (string, int, error) {
	if ip := net.ParseIP(s); ip != nil {
		return s, 0, nil
	}
	host, portStr, err := net.SplitHostPort(s)
	if err != nil {
		return s, 0, nil // no port
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port <= 0 || port > 65535 {
		return "", 0, fmt.Errorf("%w: public address %q: %q is not a TCP port", ErrUsage, s, portStr)
	}
	return host, port, nil
}

func existingServerConfig(path string) (*config.Server, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	s, err := config.LoadServer(path)
	if err != nil {
		return nil, fmt.Errorf("the existing %w; fix it or move it away, then re-run (nothing was changed)", err)
	}
	return s, nil
}

type bootstrapper struct {
	f     Fleet // with its defaults
	o     BootstrapOptions
	names Names
	res   *Result
	key   CAKeyRef // where the root key lives (BootstrapOptions.CAKey)
	kms   KMSKey   // the CA's key in KMS mode, opened on the full path
	// operator: this run is the fleet's operator (an embedded node, or
	// Init): it never just joins, and it keeps the role keys.
	operator bool
	// waited: this run waited for another node creating the fleet (it
	// adopts that node's writes, the trust state included).
	waited bool
	// joined: what this run joined after waiting for that node
	// (awaitFleet, errJoined).
	joined *shared
	// claimed: this run won the fleet's first claim (claimFirst) and
	// creates the rest, one create after another: under a throttled
	// create quota it paces them (createOrAdopt).
	claimed bool
}

func (b *bootstrapper) noteCapped(what string, is pki.Issued) {
	if !is.Capped {
		return
	}
	msg := fmt.Sprintf("the %s would outlive the CA: its expiry was capped at the CA's, %s", what, is.Cert.NotAfter.UTC().Format(time.RFC3339))
	b.res.Warnings = append(b.res.Warnings, msg)
}

func item(name, action, where string, c *x509.Certificate) Item {
	return Item{Name: name, Action: action, Where: where, CertInfo: infoOf(c)}
}

func newNodeID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "node-" + hex.EncodeToString(b)
}

func (b *bootstrapper) where(name string) string { return b.f.where(name) }

// roleTitle is a role's name in human output.
func roleTitle(r pki.Role) string {
	return "Client Certificate (" + string(r) + ")"
}
