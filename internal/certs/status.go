package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/config"
	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Health levels, ordered; they are also the exit codes of `certs status`.
const (
	OK        = 0 // all good
	Attention = 1 // something expires within the warning window, or is out of sync
	Broken    = 2 // expired, broken or unreachable
)

// CertReport describes one certificate for `status`.
type CertReport struct {
	Name    string `json:"name"`
	Where   string `json:"where"`
	Subject string `json:"subject,omitempty"`
	CertInfo
	NotBefore time.Time `json:"notBefore,omitempty"`
	DaysLeft  int       `json:"daysLeft"`
	SANs      []string  `json:"sans,omitempty"`
	Level     int       `json:"level"`
	Problems  []string  `json:"problems,omitempty"`
	// Permitted, for the node-issuing CA: the names it may sign server
	// certificates for (its name constraints); DueAt: when it is due for
	// a new key (`joblet certs node-ca --rekey --if-due`).
	Permitted []string   `json:"permittedNames,omitempty"`
	DueAt     *time.Time `json:"dueAt,omitempty"`
	// IssuedBy, for a server certificate: "root CA" (a fleet from before
	// the node-issuing CA, or a node not yet renewed from it) or the
	// node-issuing CA's fingerprint.
	IssuedBy string `json:"issuedBy,omitempty"`
}

// Report is the whole `status` answer.
type Report struct {
	Store string `json:"store"`
	// CAKey says where the CA's private key is: "AWS KMS key ARN" or
	// "store (<prefix>/ca-key)".
	CAKey string `json:"caKey,omitempty"`
	// TrustVersion is the version of the signed trust state (0: none).
	TrustVersion uint64 `json:"trustVersion,omitempty"`
	Phase        Phase  `json:"rotationPhase,omitempty"`
	// NextStep is set during a rotation (and for an interrupted begin).
	NextStep     string       `json:"rotationNextStep,omitempty"`
	Revocations  []Revocation `json:"revocations,omitempty"`
	Certificates []CertReport `json:"certificates"`
	Problems     []string     `json:"problems,omitempty"`
	// People: the identity policy, the user-issuing CA and the shared
	// role certificates still accepted (nil for a fleet without people).
	People *PeopleReport `json:"people,omitempty"`
	// Notices are worth an operator's eye but change no level.
	Notices []string `json:"notices,omitempty"`
	// Rotations: how the store rotates each secret the rotation function
	// rotates (`certs schedule`), when any is scheduled.
	Rotations []SecretRotation `json:"rotations,omitempty"`
	Level     int              `json:"level"`
}

// SecretRotation is one secret's rotation by the store.
type SecretRotation struct {
	Secret string `json:"secret"`
	secretstore.Rotation
}

func (r *Report) raise(level int, problem string) {
	r.Problems = append(r.Problems, problem)
	r.Level = max(r.Level, level)
}

// StatusOptions say what to inspect besides the fleet's store.
type StatusOptions struct {
	// StoreErr says why the store could not be opened (the Fleet's Store
	// is then nil): reported as Broken.
	StoreErr error
	// ServerConfig is this node's server config ("" to skip); RnxConfigs
	// are the rnx configs it keeps (the operator's and one per role):
	// each is checked against the store, so none is left stale and
	// looking healthy after a rotation or a re-issue.
	ServerConfig string
	RnxConfigs   []string
	WarnDays     int
	// CAKey: KMS mode even without a server config.
	CAKey CAKeyRef
}

// observed is what status read: the store's state and this node's files.
type observed struct {
	storeErr error  // the store could not be read
	state    *state // nil when storeErr
	caKey    string // where the CA key is, for humans
	// caKeyLevel and caKeyProblem: what comparing that key with the CA
	// certificate found (OK and "": they match).
	caKeyLevel   int
	caKeyProblem string
	// pendingKeyLevel and pendingKeyProblem: the same for a rotation's
	// pending CA.
	pendingKeyLevel   int
	pendingKeyProblem string
	server            *config.Server
	serverErr         error
	rnx               []rnxFile
	// node: read with a node's permissions (a node serving from the
	// node-issuing CA): the root's key place and the roles are not read.
	node bool
	// fleetNode: a node of a shared store serving from the node-issuing CA.
	fleetNode bool
	// rotations: the store's rotation of what the rotation function
	// rotates (an operator's read of Secrets Manager); rotationErr why
	// they could not be read.
	rotations   []SecretRotation
	rotationErr error
	// userCA is the user-issuing CA's certificate (PEM; operators only).
	userCA string
	// records: the re-issue records (names only, an operator's read of a
	// store that lists); older: those created more than the grace ago.
	records, olderRecords int
}

// rnxFile is one rnx config status read.
type rnxFile struct {
	path string
	cfg  *config.Rnx
	err  error
}

// Status inspects the shared certificates in the store and this node's
// files, and grades them: see OK, Attention, Broken. It reads with a node's
// permissions: never a key a node may not read.
func (fl *Fleet) Status(ctx context.Context, o StatusOptions) *Report {
	f := fl.defaults()
	obs := f.observe(ctx, o)
	return grade(obs, f.StoreDesc, o, f.Now())
}

// observe reads what status grades.
func (f *Fleet) observe(ctx context.Context, o StatusOptions) *observed {
	obs := &observed{storeErr: o.StoreErr}
	key := o.CAKey
	if o.ServerConfig != "" {
		obs.server, obs.serverErr = config.LoadServer(o.ServerConfig)
		if obs.server != nil && !key.InKMS() {
			key = f.kmsKey(obs.server.Security.CAKMSKeyID)
		}
	}
	for _, p := range o.RnxConfigs {
		rnx, err := config.LoadRnx(p)
		obs.rnx = append(obs.rnx, rnxFile{path: p, cfg: rnx, err: err})
	}
	if obs.storeErr == nil && f.Store == nil {
		obs.storeErr = fmt.Errorf("no store given")
	}
	if obs.storeErr != nil {
		return obs
	}
	// A node that serves from the node-issuing CA reads what the node
	// policy allows; an operator (no server config, an embedded node, or
	// a fleet from before the node-issuing CA) reads the root's key place
	// and every role as well.
	sc := bootstrapScope(key)
	sc.pending, sc.previousCA = true, true
	if srv := obs.server; srv != nil && srv.Store.Kind != "" && !srv.Store.EmbeddedIn(homeOf(o.ServerConfig)) {
		if _, chain, err := issuedChain(obs.server.Security.ServerCert, obs.server.Security.CACert); err == nil && len(chain) > 0 {
			obs.fleetNode = true
			// A node that holds client configs (the one that created
			// the fleet) checks them as an operator would.
			if len(obs.rnx) == 0 {
				sc = nodeScope
				sc.pending, sc.previousCA = true, true
				obs.node = true
			}
		}
	}
	sc.orBefore13 = true // an upgraded node on its policy from before the node-issuing CA
	// An operator's status walks the trust state's whole history: an
	// older state put back, or one signed by a foreign root, is Broken.
	sc.operator, sc.fullHistory = !obs.node, !obs.node
	s, err := f.readState(ctx, sc)
	if err != nil {
		obs.storeErr = err
		return obs
	}
	obs.state = s
	if s.ca != nil && !obs.node {
		obs.caKey, obs.caKeyLevel, obs.caKeyProblem = f.caKeyPlace(ctx, s)
		obs.pendingKeyLevel, obs.pendingKeyProblem = f.pendingKeyCheck(ctx, s)
		obs.userCA = f.userCACert(ctx, s.n)
	}
	if ls, ok := f.Store.(secretstore.Lister); ok && !obs.node {
		if recs, err := ls.List(ctx, s.n.ReissueDir()); err == nil {
			for _, r := range recs {
				if _, _, ok := s.n.ParseReissue(r.Name); ok {
					obs.records++
					if !r.Created.IsZero() && f.Now().Sub(r.Created) >= ReissueRecordGrace {
						obs.olderRecords++
					}
				}
			}
		}
	}
	if rr, ok := f.Store.(secretstore.RotationReader); ok && !obs.node {
		for _, name := range s.n.RotatedSecrets() {
			r, err := rr.Rotation(ctx, name)
			if errors.Is(err, secretstore.ErrNotExist) {
				continue // ca-key of a root in KMS; user-ca of a fleet without logins
			}
			if err != nil {
				obs.rotations, obs.rotationErr = nil, err
				break
			}
			obs.rotations = append(obs.rotations, SecretRotation{Secret: name, Rotation: r})
		}
	}
	return obs
}

// homeOf is the joblet home of a server config at HOME/config/joblet-config.yml.
func homeOf(serverConfig string) string { return filepath.Dir(filepath.Dir(serverConfig)) }

// caKeyPlace says where the key of the current CA is, from what was read
// (ca-key in store mode, ca-kms-key in KMS mode), and whether it is the
// key the CA certificate is for: ca-key parsed, a KMS key by its public
// half (kms:GetPublicKey). A key that is not the certificate's is Broken:
// nothing the root signs (the CRL, the trust state, a rotation step) can
// be made, and one of the two secrets was written without the other.
func (f *Fleet) caKeyPlace(ctx context.Context, s *state) (string, int, string) {
	n := s.n
	stored := s.vals[n.CAKey()]
	if k, err := pki.ParseKey([]byte(stored)); err == nil && samePublicKey(s.ca, k) {
		return "store (" + n.CAKey() + ")", OK, ""
	}
	ref := s.caKey
	if !ref.InKMS() {
		ref, _ = f.readKMSRef(ctx)
	}
	if !ref.InKMS() {
		place := "unknown: neither " + n.CAKey() + " nor " + n.CAKMSKey() + " holds it"
		if stored != "" {
			return place, Broken, fmt.Sprintf("%s holds a key that is not %s's: whoever wrote one of them did it without the other. Restore the previous version of the one that changed", n.CAKey(), n.CACert())
		}
		return place, OK, ""
	}
	place := "AWS KMS key " + ref.KeyID
	if f.OpenKMS == nil {
		return place, OK, ""
	}
	k, err := f.OpenKMS(ctx, ref)
	if err != nil {
		return place, Attention, fmt.Sprintf("the root's KMS key (%s names %s) could not be compared with %s: %v", n.CAKMSKey(), ref.KeyID, n.CACert(), err)
	}
	if !samePublicKey(s.ca, k) {
		return place, Broken, fmt.Sprintf("%s names KMS key %s, whose public key (kms:GetPublicKey) is not the one %s (sha256 %s) is for: nothing the root signs (the CRL, the signed trust state, a rotation step) can be made. "+
			"If a rotate-ca step stopped half-way, run it again; otherwise one of them was written without the other: restore the previous version of the one that changed (`aws secretsmanager list-secret-version-ids --secret-id %s`, then `aws secretsmanager update-secret-version-stage`), and find out who wrote it",
			n.CAKMSKey(), ref.KeyID, n.CACert(), pki.Fingerprint(s.ca), n.CAKMSKey())
	}
	return place, OK, ""
}

// pendingKeyCheck compares a rotation's pending CA (ca-cert's pending
// version) with the keys a begin writes for it: the pending ca-key, or the
// KMS key ca-kms-key names (pending, or current when the fleet moves from
// the store to KMS). None of them its key is Broken: promote would fail,
// and the pending CA was not written by a begin. One read, only while a CA
// is pending.
func (f *Fleet) pendingKeyCheck(ctx context.Context, s *state) (int, string) {
	p, n := s.pendingCA(), s.n
	if p == nil {
		return OK, ""
	}
	pend, err := f.Store.GetStage(ctx, []string{n.CAKey(), n.CAKMSKey()}, secretstore.Pending)
	if err != nil {
		return OK, "" // this reader may not: nothing to tell
	}
	if k, err := pki.ParseKey([]byte(pend[n.CAKey()])); err == nil && samePublicKey(p, k) {
		return OK, ""
	}
	refs := []CAKeyRef{f.kmsKey(pend[n.CAKMSKey()]), s.caKey}
	if !s.caKey.InKMS() {
		cur, _ := f.readKMSRef(ctx)
		refs = append(refs, cur)
	}
	var tried []string
	for _, ref := range refs {
		if !ref.InKMS() || slices.Contains(tried, ref.KeyID) {
			continue
		}
		if f.OpenKMS == nil {
			return OK, "" // cannot compare here
		}
		k, err := f.OpenKMS(ctx, ref)
		if err != nil {
			return Attention, fmt.Sprintf("the pending CA's KMS key %s could not be compared with the pending %s: %v", ref.KeyID, n.CACert(), err)
		}
		if samePublicKey(p, k) {
			return OK, ""
		}
		tried = append(tried, ref.KeyID)
	}
	where := "the pending " + n.CAKey()
	if len(tried) > 0 {
		where += " nor of KMS key " + strings.Join(tried, ", ")
	}
	return Broken, fmt.Sprintf("the pending version of %s (a rotation's new CA, sha256 %s) is not the certificate of %s: `rotate-ca promote` would fail. If a `rotate-ca begin` stopped half-way, run it again; otherwise it was written without the root key: `rotate-ca abort` drops it",
		n.CACert(), pki.Fingerprint(p), where)
}

// grade turns what was observed into the report: pure, given now.
func grade(obs *observed, storeDesc string, o StatusOptions, now time.Time) *Report {
	g := &grader{rep: &Report{Store: storeDesc}, now: now, o: o, storeDesc: storeDesc}
	revoked := map[string]bool{}
	if obs.storeErr != nil {
		g.rep.raise(Broken, fmt.Sprintf("store unreachable: %v", obs.storeErr))
	} else {
		revoked = g.shared(obs.state, obs.caKey, !obs.node)
		if !obs.node && obs.state.ca != nil {
			g.people(obs.state, obs.userCA)
		}
		for _, p := range []struct {
			level   int
			problem string
		}{{obs.caKeyLevel, obs.caKeyProblem}, {obs.pendingKeyLevel, obs.pendingKeyProblem}} {
			if p.problem != "" {
				g.rep.raise(p.level, p.problem)
			}
		}
	}
	g.rotations(obs)
	g.reissueRecords(obs)
	if o.ServerConfig != "" {
		g.server(obs, revoked)
	}
	if obs.state != nil {
		for _, f := range obs.rnx {
			g.clientConfig(f, obs.state, !obs.node)
		}
	}
	if obs.fleetNode && len(obs.rnx) > 0 {
		var paths []string
		for _, f := range obs.rnx {
			paths = append(paths, f.path)
		}
		// A notice, not a level: the node that created the fleet keeps
		// them by design (the spec's flow), and exit codes feed alerts.
		g.rep.Notices = append(g.rep.Notices, fmt.Sprintf("this node holds role client keys a node does not need (%s): a stolen node would give them away. Move them to the operator's machine and delete them here; clients get configs with `rnx config init`", strings.Join(paths, ", ")))
	}
	return g.rep
}

type grader struct {
	rep       *Report
	now       time.Time
	o         StatusOptions
	storeDesc string
}

// cert grades one certificate's validity window.
func (g *grader) cert(name, where string, c *x509.Certificate) CertReport {
	now, warn := g.now, time.Duration(g.o.WarnDays)*24*time.Hour
	cr := CertReport{Name: name, Where: where, Subject: c.Subject.String(), CertInfo: infoOf(c),
		NotBefore: c.NotBefore.UTC(), DaysLeft: int(c.NotAfter.Sub(now).Hours() / 24)}
	cr.SANs = append(cr.SANs, c.DNSNames...)
	for _, ip := range c.IPAddresses {
		cr.SANs = append(cr.SANs, ip.String())
	}
	switch {
	case !now.Before(c.NotAfter):
		cr.Level, cr.Problems = Broken, []string{"expired on " + c.NotAfter.UTC().Format(time.RFC3339)}
	case c.NotAfter.Sub(now) < warn:
		cr.Level, cr.Problems = Attention, []string{fmt.Sprintf("expires in %d days (warning at %d)", cr.DaysLeft, g.o.WarnDays)}
	}
	return cr
}

func (g *grader) add(cr CertReport) {
	g.rep.Certificates = append(g.rep.Certificates, cr)
	for _, p := range cr.Problems {
		g.rep.raise(cr.Level, cr.Name+": "+p)
	}
}

// shared grades the store's CA, node-issuing CA and (roles) role
// certificates and returns the serials the CRL revokes.
func (g *grader) shared(s *state, caKey string, roles bool) map[string]bool {
	n, rep := s.n, g.rep
	if s.caErr != nil {
		rep.raise(Broken, s.caErr.Error())
	} else {
		cr := g.cert("CA Certificate", g.storeDesc+" ("+n.CACert()+")", s.ca)
		if err := pki.CheckCA(s.ca, g.now); err != nil && cr.Level < Broken {
			cr.Level, cr.Problems = Broken, append(cr.Problems, err.Error())
		}
		g.add(cr)
		rep.CAKey = caKey
		if err := s.trusted(); err != nil {
			rep.raise(Broken, err.Error())
		}
		rep.Revocations = s.revs
		rep.Phase = s.phase
		if s.phase != PhaseStable {
			rep.NextStep = nextStep(s.phase, s.interrupted)
		}
	}
	if s.ca != nil {
		g.nodeCA(s)
		g.bundle(s)
		g.trustState(s)
	}
	for _, role := range pki.Roles {
		if !roles {
			break
		}
		c := s.clients[role]
		if c == nil {
			rep.raise(Broken, s.clientErr[role].Error())
			continue
		}
		cr := g.cert(roleTitle(role), g.storeDesc+" ("+n.ClientCert(role)+")", c)
		if k, err := pki.ParseKey([]byte(s.vals[n.ClientKey(role)])); err != nil || pki.MatchesKey(c, k) != nil {
			cr.Level, cr.Problems = Broken, append(cr.Problems, "does not match "+n.ClientKey(role))
		}
		if pki.CheckNotRevoked(c, s.revoked) != nil {
			cr.Level, cr.Problems = Broken, append(cr.Problems, "is revoked: give the role a new certificate (`joblet certs reissue --role "+string(role)+"`)")
		}
		g.add(cr)
	}
	return s.revoked
}

// bundle flags a trusted CA that the fleet's ca-cert never held (as its
// current, pending or previous version): the trust bundle is the one
// shared secret a node trusts as it is, so a CA added to it by a store
// write (and not by a rotation) is reported, not shown as a rotation.
func (g *grader) bundle(s *state) {
	known := []*x509.Certificate{s.ca}
	if p := s.pendingCA(); p != nil {
		known = append(known, p)
	}
	if s.previous != nil {
		known = append(known, s.previous)
	}
	for _, t := range s.trust {
		if !slices.ContainsFunc(known, func(k *x509.Certificate) bool { return sameCA(k, t) }) {
			g.rep.raise(Broken, fmt.Sprintf("%s trusts a CA that %s never held as its current, pending or previous version (%q, sha256 %s): nodes accept what it signs. If no rotation put it there, someone wrote to the store: restore the bundle's previous version and find out who",
				s.n.Bundle(), s.n.CACert(), t.Subject.CommonName, pki.Fingerprint(t)))
		}
	}
}

// trustState grades the signed trust state: present (or the fleet is told
// how to move onto it), listing the current root, fresh, and naming no CRL
// newer than the store holds. One that does not verify is already Broken
// (s.trusted).
func (g *grader) trustState(s *state) {
	n, now := s.n, g.now
	if s.doc == nil {
		if s.trustErr == nil {
			g.rep.raise(Attention, fmt.Sprintf("%s holds no signed trust state: nodes and clients from before it take whatever CA a store write puts there. Run `joblet certs trust sign` once (under traffic; docs/OPERATIONS.md)", n.Bundle()))
		}
		return
	}
	if p := s.pendingCA(); p != nil && (s.cross == nil || !pki.IsCrossOf(s.cross, p, s.ca)) {
		g.rep.raise(Attention, fmt.Sprintf("%s has a pending CA (%s) that the current root has not cross-signed: a `rotate-ca begin` interrupted before its cross certificate (run it again: it completes only the CA its rotation record names), or a write without the root key (then `rotate-ca abort` drops it)", n.CACert(), pki.Fingerprint(p)))
	}
	g.rep.TrustVersion = s.doc.Version
	if s.rolledBack != "" {
		g.rep.raise(Broken, s.rolledBack)
	}
	if len(s.foreign) > 0 {
		// Attention, not Broken: without a pin, a state someone signed
		// with a key of their own (refused by every reader, harmless once
		// past) and the fleet's own states seen from a swapped root look
		// alike; the pin tells them apart (a swapped root is then refused).
		g.rep.raise(Attention, fmt.Sprintf("the history of %s holds %d signed trust state(s) from a key outside this root's lineage (the newest stored %s): someone signed one with a key of their own (readers refuse it), or this store's root was replaced without a rotation. Run status with the fingerprint `joblet certs init` printed (JOBLET_CA_FINGERPRINT) to tell which",
			n.Bundle(), len(s.foreign), slices.MaxFunc(s.foreign, time.Time.Compare).UTC().Format(time.RFC3339)))
	}
	if s.historyErr != nil {
		g.rep.raise(Attention, fmt.Sprintf("%v: status cannot tell an older trust state put back", s.historyErr))
	}
	if err := s.rootVouched(); err != nil {
		g.rep.raise(Broken, err.Error())
	}
	switch {
	case s.doc.Expired(now):
		g.rep.raise(Broken, fmt.Sprintf("the signed trust state (version %d) expired on %s: nodes keep enforcing it and report it stale. Run `joblet certs trust sign`, and run it daily", s.doc.Version, s.doc.Expires.UTC().Format(time.RFC3339)))
	case s.doc.Due(now):
		g.rep.raise(Attention, fmt.Sprintf("the signed trust state (version %d) expires on %s: run `joblet certs trust sign` (daily, on a schedule)", s.doc.Version, s.doc.Expires.UTC().Format(time.RFC3339)))
	}
	if prev, err := pki.VerifyTrust([]byte(s.previousDoc), n.Prefix, s.operatorAnchors(), nil, nil); err == nil && prev.Version > s.doc.Version {
		g.rep.raise(Broken, fmt.Sprintf("%s holds trust state version %d, older than the version %d it replaced: an older version was put back (a rollback readers refuse). Run `joblet certs trust sign`, and find out who wrote it", n.Bundle(), s.doc.Version, prev.Version))
	}
	if held, _ := pki.PeekCRLNumber([]byte(s.vals[n.CRL()])); held != nil && (s.doc.MinCRL == nil || s.doc.MinCRL.Cmp(held) < 0) {
		g.rep.raise(Attention, fmt.Sprintf("the signed trust state in %s (version %d) names an older CRL than %s holds: an older version was put back, or a revoke could not sign it. Run `joblet certs trust sign`", n.Bundle(), s.doc.Version, n.CRL()))
	}
	if gap := crlGap(s.doc, s.vals[n.CRL()]); gap != "" {
		g.rep.raise(Broken, fmt.Sprintf("%s is older than the signed trust state names, or missing (deleted, or an older version put back): a node joining now refuses every call. Restore the CRL's previous version, or revoke again (`joblet certs revoke` merges what the previous version listed)", n.CRL()))
	}
}

// nodeCA grades the node-issuing CA: present and constrained under the
// current CA, or missing in a fleet from before it (every node then holds
// the root key: attention, with the way out).
func (g *grader) nodeCA(s *state) {
	n := s.n
	if why := s.foreignNodeKey(); why != "" {
		// Not the message parseNodeCA gives (re-issue for the key): the
		// root must never certify this key.
		g.rep.raise(Broken, fmt.Sprintf("%s. Nodes cannot renew with it, and the root never certifies it (whoever wrote it could then impersonate every node): `joblet certs node-ca --rekey`, with the operator's permissions, replaces it with a new key that the signed trust state lists; then find out who wrote it", why))
		return
	}
	if s.nodeCAErr != nil && s.nodeKeyListedApart() {
		g.rep.raise(Broken, fmt.Sprintf("a re-key of the node-issuing CA stopped between its key and its certificate: %s is not the certificate of %s, so nodes cannot renew. The next scheduled `joblet certs node-ca --rekey --if-due` (or `joblet certs node-ca`, or a retry of the rotation function's finishSecret) completes it with the certificate the signed trust state lists for that key", n.NodeCACert(), n.NodeCAKey()))
		return
	}
	switch {
	case s.nodeCAErr != nil:
		g.rep.raise(Broken, s.nodeCAErr.Error())
	case s.nodeCA != nil:
		c := s.nodeCA.Cert
		cr := g.cert("Node-issuing CA", g.storeDesc+" ("+n.NodeCACert()+")", c)
		// It lives days and is re-keyed by a scheduled run: --warn-days
		// is for what people renew. It needs attention once it is due
		// (the run did not happen), and is broken once expired (nodes
		// can no longer renew: g.cert says so).
		if cr.Level == Attention {
			cr.Level, cr.Problems = OK, nil
		}
		at := pki.NodeCADueAt(c).UTC()
		cr.DueAt = &at
		if due, why := pki.NodeCADue(c, g.now); due && cr.Level < Broken {
			cr.Level = Attention
			cr.Problems = append(cr.Problems, "due for a new key: "+why+". Run `joblet certs node-ca --rekey --if-due` (on a daily schedule: docs/OPERATIONS.md, \"The node-issuing CA's schedule\"); nodes move to the new one on their next refresh")
		}
		if nc, ok := pki.NodeConstraintsOf(c); ok {
			cr.Permitted = nc.Strings()
		} else {
			cr.Level = max(cr.Level, Attention)
			cr.Problems = append(cr.Problems, "carries no name constraints (made before them): a stolen node's copy of its key signs server certificates for any name. Re-key it once with the names your nodes carry beyond the defaults: `joblet certs node-ca --rekey --permit-server-names NAMES`")
		}
		if c.CheckSignatureFrom(s.ca) != nil {
			cr.Level = max(cr.Level, Attention)
			cr.Problems = append(cr.Problems, "signed by a previous CA still trusted (`joblet certs node-ca` re-issues it from the current one)")
		}
		g.add(cr)
	case !pki.AllowsIntermediates(s.ca):
		g.rep.raise(Attention, "this fleet's CA was made before node-issuing CAs: every node signs with the root key (a stolen node can issue an admin certificate). Move it with `joblet certs node-ca` (docs/OPERATIONS.md, \"Split issuing power\")")
	default:
		g.rep.raise(Attention, fmt.Sprintf("the store has no node-issuing CA (%s, %s) although the root allows one: nodes still sign with the root's key, and nodes on the node policy cannot join. "+
			"If `joblet certs node-ca` re-issued the root, have every client config refreshed (`rnx config refresh`), then run it again; otherwise run `joblet certs node-ca` (or `joblet certs init`) with the operator's permissions", n.NodeCACert(), n.NodeCAKey()))
	}
}

// server grades this node's server certificate against the store's state.
func (g *grader) server(obs *observed, revoked map[string]bool) {
	srv, s, path := obs.server, obs.state, g.o.ServerConfig
	if obs.serverErr != nil {
		g.rep.raise(Broken, obs.serverErr.Error())
		return
	}
	leaf, chain, err := issuedChain(srv.Security.ServerCert, srv.Security.CACert)
	if err != nil {
		g.rep.raise(Broken, fmt.Sprintf("security.serverCert in %s: %v", path, err))
		return
	}
	cr := g.cert("Server Certificate", "local ("+path+")", leaf)
	// A server certificate renews itself (at two thirds of its life, days
	// in a fleet): --warn-days is for what people renew. It needs
	// attention once its renewal is overdue.
	if cr.Level == Attention {
		cr.Level, cr.Problems = OK, nil
	}
	if k, err := pki.ParseKey([]byte(srv.Security.ServerKey)); err != nil || pki.MatchesKey(leaf, k) != nil {
		cr.Level = Broken
		cr.Problems = append(cr.Problems, "security.serverKey in "+path+" is not this certificate's key: the server cannot serve TLS with them. `joblet certs renew` issues a new pair")
	}
	if renewAt := leaf.NotBefore.Add(leaf.NotAfter.Sub(leaf.NotBefore) * 2 / 3); !g.now.Before(renewAt) && g.now.Before(leaf.NotAfter) {
		cr.Level = Attention
		cr.Problems = append(cr.Problems, fmt.Sprintf("past two thirds of its lifetime (expires in %d days) and not renewed: the running server renews it on its refresh; check that it runs and reaches the store (its log), or run `joblet certs renew`", cr.DaysLeft))
	}
	if pki.CheckNotRevoked(leaf, revoked) != nil {
		cr.Level = max(cr.Level, Attention)
		cr.Problems = append(cr.Problems, "is revoked (the running server renews it on its next refresh; or `joblet certs renew`)")
	}
	if missing := MissingNames(srv); len(missing) > 0 {
		// Clients and balancers that reach the node by such a name fail
		// the handshake; renewal copies the certificate's names, so only
		// a bootstrap (which keeps the configured ones) adds them back.
		cr.Level = max(cr.Level, Attention)
		cr.Problems = append(cr.Problems, fmt.Sprintf("lacks %s, configured in %s (server.serverAddress, publicAddress, additionalNames): clients that reach the node by it fail the handshake; re-run `joblet certs bootstrap`, which keeps the configured names", strings.Join(missing, ", "), path))
	}
	if s != nil {
		// A CRL that went missing or back in the store is a revocation
		// someone tried to undo: the node keeps its own, and this says so.
		if _, problem := newestCRL(srv.Security.CRL, s.vals[s.n.CRL()], s.crlErr, s.n.CRL(), s.trust); problem != "" {
			g.rep.raise(Broken, problem)
		}
	}
	if s != nil && s.ca != nil {
		switch {
		case s.nodeCA != nil && len(chain) == 0:
			cr.Level = max(cr.Level, Attention)
			cr.Problems = append(cr.Problems, "signed by the root directly, not by the fleet's node-issuing CA (the server renews from it on its next refresh; or `joblet certs renew`)")
		case s.nodeCA != nil && leaf.CheckSignatureFrom(s.nodeCA.Cert) != nil && cr.Level < Broken:
			cr.Level = max(cr.Level, Attention)
			cr.Problems = append(cr.Problems, "not signed by the store's current node-issuing CA (renew: `joblet certs renew`)")
		case s.nodeCA == nil && leaf.CheckSignatureFrom(s.ca) != nil && cr.Level < Broken:
			cr.Level = max(cr.Level, Attention)
			cr.Problems = append(cr.Problems, "not signed by the store's current CA (renew: `joblet certs renew`)")
		}
		if s.nodeCA != nil {
			// Renewal keeps the certificate's names: one the node-issuing
			// CA may not sign for fails every renewal from now on.
			if nc, ok := pki.NodeConstraintsOf(s.nodeCA.Cert); ok {
				if err := nc.Permits(pki.SANs{DNS: leaf.DNSNames, IPs: leaf.IPAddresses}); err != nil {
					cr.Level = Broken
					cr.Problems = append(cr.Problems, fmt.Sprintf("cannot be renewed: %v. Widen the names (operator: `joblet certs node-ca --permit-server-names NAME`), or re-run `joblet certs bootstrap` without that name", err))
				}
			}
		}
		cr.IssuedBy = "root CA"
		if len(chain) > 0 {
			cr.IssuedBy = "node-issuing CA " + pki.Fingerprint(chain[0])
		}
		if !pki.SameCertSet(srv.Security.CACert, s.trust) {
			cr.Level = max(cr.Level, Attention)
			cr.Problems = append(cr.Problems, "the local trust bundle differs from the store's (the server refreshes it; or run `joblet certs renew`)")
		}
	}
	g.add(cr)
}

// clientConfig flags an rnx config that does not work with the fleet as the
// store has it (Broken), will stop working at `rotate-ca finish`
// (Attention), or is not what a refresh would give (Attention), or a file
// that does not load: none is left stale and looking healthy. roles says
// whether the roles' certificates were read (not by a node: it may not).
func (g *grader) clientConfig(f rnxFile, s *state, roles bool) {
	if f.err != nil {
		g.rep.raise(Attention, f.err.Error())
		return
	}
	for _, name := range f.cfg.NodeNames() {
		node := f.cfg.Nodes[name]
		where := fmt.Sprintf("%s: node %q", f.path, name)
		chain, err := pki.ParseCerts([]byte(node.Cert))
		if err != nil {
			g.rep.raise(Attention, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		role, err := pki.RoleOf(chain[0])
		if err != nil {
			g.rep.raise(Attention, fmt.Sprintf("%s: %v", where, err))
			continue
		}
		if k, err := pki.ParseKey([]byte(node.Key)); err != nil || pki.MatchesKey(chain[0], k) != nil {
			g.rep.raise(Broken, fmt.Sprintf("%s: its key is not its client certificate's: rnx cannot connect with them; `rnx config refresh` (or a new config from `rnx config init`)", where))
			continue
		}
		level, problem := s.gradeClient(chain, node.CA, role, roles, g.now)
		if level > OK {
			g.rep.raise(level, where+": "+problem)
		}
	}
}

// gradeClient says whether a config's client chain and trust (caPEM) work
// with the fleet now, will after the rotation's finish, and (when the
// roles' certificates were read) are what a refresh would give.
func (s *state) gradeClient(chain []*x509.Certificate, caPEM string, role pki.Role, roles bool, now time.Time) (int, string) {
	const refresh = "run `rnx config refresh` with that config"
	if s.ca == nil || s.trust == nil {
		return OK, ""
	}
	trusts, _ := pki.ParseCerts([]byte(caPEM))
	if err := verifyChain(chain, s.trust, now); err != nil {
		return Broken, fmt.Sprintf("no longer works: its %s client certificate is not from a CA the fleet trusts (%v); %s", role, err, refresh)
	}
	if !s.verifiesServer(trusts, s.ca) {
		return Broken, "no longer works: it does not trust the CA the nodes' certificates come from; " + refresh
	}
	if final := s.finalCA(); final != nil {
		if verifyChain(chain, []*x509.Certificate{final}, now) != nil || !containsCert(trusts, final) {
			return Attention, "works until `rotate-ca finish` only (its client certificate or its trust is the old CA's); " + refresh + " before then"
		}
	}
	// The leaf decides: a cross certificate after it that no longer
	// bridges anything is harmless.
	want, _, err := s.clientMaterial(role)
	if w, werr := pki.ParseCerts([]byte(want)); roles && err == nil && werr == nil && !w[0].Equal(chain[0]) {
		return Attention, fmt.Sprintf("holds the %s role's client certificate, but not the one the store hands out now; %s", role, refresh)
	}
	switch {
	case pki.SameCertSet(caPEM, s.trust), s.phase != PhaseStable:
		// During a rotation a refreshed config trusts both CAs, as the
		// store does.
		return OK, ""
	case !containsAll(trusts, s.trust):
		return Attention, "trusts other CAs than the store; " + refresh
	}
	return Attention, "works, but still trusts a CA the fleet retired (a rotation finished since its last refresh); " + refresh + " to stop trusting it"
}

func containsAll(set, want []*x509.Certificate) bool {
	for _, c := range want {
		if !containsCert(set, c) {
			return false
		}
	}
	return true
}

// finalCA is the CA that stays trusted after the rotation's finish (the
// pending one while begun, the current one once promoted), nil when stable.
func (s *state) finalCA() *x509.Certificate {
	switch s.phase {
	case PhaseBegun:
		return s.pendingCA()
	case PhasePromoted:
		return s.ca
	}
	return nil
}

// verifiesServer says whether a config trusting trusts verifies what nodes
// serve from ca: ca itself, or the cross certificate to a CA it trusts.
func (s *state) verifiesServer(trusts []*x509.Certificate, ca *x509.Certificate) bool {
	for _, t := range trusts {
		// The same CA under another certificate (a root re-issued by
		// `certs node-ca`) anchors the same chains, except a chain through
		// the node-issuing CA when that certificate allows no CA under it.
		if t.Equal(ca) || (sameCA(t, ca) && (s.nodeCA == nil || pki.AllowsIntermediates(t))) {
			return true
		}
	}
	for _, t := range trusts {
		if s.cross != nil && pki.IsCrossOf(s.cross, ca, t) && containsCert(s.trust, t) {
			return true
		}
	}
	return false
}

func containsCert(set []*x509.Certificate, c *x509.Certificate) bool {
	for _, x := range set {
		if x.Equal(c) {
			return true
		}
	}
	return false
}

// verifyChain verifies a presented client chain (leaf first) against roots.
func verifyChain(chain, roots []*x509.Certificate, now time.Time) error {
	rp, ip := x509.NewCertPool(), x509.NewCertPool()
	for _, r := range roots {
		rp.AddCert(r)
	}
	for _, c := range chain[1:] {
		ip.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: rp, Intermediates: ip, CurrentTime: now, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	return err
}

// rotations reports the store's rotation schedules when any secret has
// one: a rotation that started and did not finish is Attention (Secrets
// Manager retries it; the function's log says why).
func (g *grader) rotations(obs *observed) {
	if obs.rotationErr != nil {
		g.rep.Notices = append(g.rep.Notices, fmt.Sprintf("the rotation schedules could not be read (%v): the operator's policy (`joblet certs iam-policy --for rotation`) allows secretsmanager:DescribeSecret on them", obs.rotationErr))
		return
	}
	if !slices.ContainsFunc(obs.rotations, func(r SecretRotation) bool { return r.Enabled || r.Pending != "" }) {
		return
	}
	g.rep.Rotations = obs.rotations
	for _, r := range obs.rotations {
		if r.Pending != "" {
			why := "(\"joblet rotation step failed\")"
			if strings.HasSuffix(r.Secret, "/ca-key") {
				why = "(\"joblet root rotation waits for the fleet\": a node not ready for the run's step, or \"joblet rotation step failed\")"
			}
			g.rep.raise(Attention, fmt.Sprintf("a rotation of %s did not finish (version %s): Secrets Manager retries it; the rotation function's log says why %s; its current version is unchanged", r.Secret, r.Pending, why))
		}
	}
}

// reissueRecords notes the re-issue records the store holds (each holds a
// private key no schedule rotates) and how many are past the grace: those
// of completed re-issues `certs prune` removes.
func (g *grader) reissueRecords(obs *observed) {
	if obs.olderRecords == 0 {
		return
	}
	g.rep.Notices = append(g.rep.Notices, fmt.Sprintf("%d re-issue record(s) under %s/ hold private keys, %d of them created more than %s ago: `joblet certs prune` removes those whose re-issue is complete (`--dry-run` says why it keeps any)",
		obs.records, obs.state.n.ReissueDir(), obs.olderRecords, ReissueRecordGrace))
}
