package certs

import (
	"context"
	"crypto/x509"
	"fmt"
	"math/big"
	"slices"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
	"github.com/ehsaniara/joblet/internal/secretstore"
)

// ReissueRecordGrace is how long a re-issue record stays after its re-issue
// completed (the role's certificate last changed) and after it was created,
// whichever is later. A run that read the role's old certificate before
// the re-issue completed may still be on its way to the record (a slow
// operator, a retried step): it must find the pair the first run wrote,
// not mint another. An hour is well past any run's life (a command's
// deadline, --timeout, is 2 minutes by default; a rotation function's
// run, a Lambda's, at most 15 minutes), clock skew included.
const ReissueRecordGrace = time.Hour

// Record fates (PrunedRecord.Fate).
const (
	RecordRemoved   = "removed"
	RecordRemovable = "removable" // a dry run: would be removed
	RecordKept      = "kept"
)

// PrunedRecord is what a prune did with one secret under
// <prefix>/client-reissue/.
type PrunedRecord struct {
	Secret string `json:"secret"`
	Role   string `json:"role,omitempty"`
	// Serial is the certificate the record's re-issue replaced (hex).
	Serial  string    `json:"replacedSerial,omitempty"`
	Created time.Time `json:"created,omitzero"`
	Fate    string    `json:"fate"`
	// Reason says why a record is kept, or what removing it waited for.
	Reason string `json:"reason,omitempty"`
}

// Pruned is what PruneReissueRecords found and did.
type Pruned struct {
	Grace   string         `json:"grace"`
	DryRun  bool           `json:"dryRun,omitempty"`
	Records []PrunedRecord `json:"records"`
	Removed int            `json:"removed"`
	// Failed: records that may be removed and were not (the store
	// refused); the error says why.
	Failed int `json:"failed,omitempty"`
}

// PruneOptions tune PruneReissueRecords.
type PruneOptions struct {
	// Grace: ReissueRecordGrace when zero; negative: none (the operator
	// knows no other re-issue is running).
	Grace  time.Duration
	DryRun bool
}

// PruneReissueRecords removes the re-issue records (Names.Reissue) whose
// re-issue is complete and that no run can still need. Each record holds a
// private key (the pair it agreed on), and no rotation schedule covers it.
// A record is removed only when all of these hold:
//
//   - its name is one Reissue gives (a known role, a canonical serial):
//     nothing else under the folder, and nothing outside it, is touched;
//   - the role's current certificate parses, matches the role's current
//     key, and verifies under the fleet's trust (the root decides, not a
//     store write);
//   - that certificate is not the one the record replaces (a re-issue
//     from it is in progress, or was interrupted and is completed from
//     the record by the next run), and it is the record's certificate or
//     one issued no earlier (a certificate put back from before the record,
//     by hand or by someone who can write the store, keeps it), or the
//     record was made after the role's certificate last changed (a slow
//     run's pair that never became the role's, which it could not remove);
//   - the record is parseable as a pair (one that is not is evidence: it is
//     kept, and reported);
//   - both the record and the role's certificate have been unchanged for
//     the grace (ReissueRecordGrace): a run that read the old certificate
//     before the re-issue completed still finds the pair.
//
// A store write without the root key can only make it keep more: every
// condition that removes is read from the root-verified certificate and
// the store's own timestamps, and what it removes is only ever a record's
// name. The store must list (secretstore.Lister) and remove
// (secretstore.Remover).
func (fl *Fleet) PruneReissueRecords(ctx context.Context, o PruneOptions) (*Pruned, error) {
	f := fl.defaults()
	n := f.names()
	grace := o.Grace
	switch {
	case grace == 0:
		grace = ReissueRecordGrace
	case grace < 0:
		grace = 0
	}
	out := &Pruned{Grace: grace.String(), DryRun: o.DryRun, Records: []PrunedRecord{}}
	ls, canList := f.Store.(secretstore.Lister)
	rm, canRemove := f.Store.(secretstore.Remover)
	if !canList || (!canRemove && !o.DryRun) {
		return nil, fmt.Errorf("%w: %s cannot list and remove secrets", ErrUsage, f.StoreDesc)
	}
	s, err := f.readState(ctx, scope{operator: true, roles: pki.Roles})
	if err != nil {
		return nil, err
	}
	if err := s.trusted(); err != nil {
		return nil, err
	}
	// The role certificates' times first, then the records: a record
	// created after the first list is younger than the grace anyway.
	top, err := ls.List(ctx, n.Prefix)
	if err != nil {
		return nil, fmt.Errorf("list %s/ in %s: %w", n.Prefix, f.StoreDesc, err)
	}
	changed := map[string]time.Time{}
	for _, l := range top {
		changed[l.Name] = l.Changed
	}
	listed, err := ls.List(ctx, n.ReissueDir())
	if err != nil {
		return nil, fmt.Errorf("list %s/ in %s: %w", n.ReissueDir(), f.StoreDesc, err)
	}
	var recNames []string
	for _, l := range listed {
		if _, _, ok := n.ParseReissue(l.Name); ok {
			recNames = append(recNames, l.Name)
		}
	}
	recs := map[string]string{}
	if len(recNames) > 0 {
		if recs, err = f.Store.Get(ctx, recNames); err != nil {
			return nil, fmt.Errorf("read the re-issue records in %s: %w", f.StoreDesc, err)
		}
	}
	now := f.Now()
	var failed []error
	for _, l := range listed {
		r := PrunedRecord{Secret: l.Name, Created: l.Created.UTC(), Fate: RecordKept}
		role, serial, ok := n.ParseReissue(l.Name)
		if ok {
			r.Role, r.Serial = string(role), pki.SerialHex(serial)
			r.Reason = f.recordNeeded(s, role, serial, recs[l.Name], l, changed[n.ClientCert(role)], now, grace)
		} else {
			r.Reason = "not a name joblet gives a re-issue record: left alone"
		}
		if r.Reason == "" {
			switch {
			case o.DryRun:
				r.Fate = RecordRemovable
			default:
				if err := rm.Remove(ctx, l.Name); err != nil {
					failed = append(failed, err)
					r.Reason = "could not be removed: " + err.Error()
					break
				}
				r.Fate = RecordRemoved
				out.Removed++
			}
		}
		out.Records = append(out.Records, r)
	}
	slices.SortFunc(out.Records, func(a, b PrunedRecord) int { return a.Created.Compare(b.Created) })
	if len(failed) > 0 {
		out.Failed = len(failed)
		return out, fmt.Errorf("%d re-issue record(s) not removed from %s: %w", len(failed), f.StoreDesc, failed[0])
	}
	return out, nil
}

// recordNeeded says why the record of role's re-issue away from serial
// (value, as listed in l) must stay, or "" when nothing can need it.
// certChanged is when the role's certificate last changed.
func (f *Fleet) recordNeeded(s *state, role pki.Role, serial *big.Int, value string, l secretstore.Listed, certChanged time.Time, now time.Time, grace time.Duration) string {
	n := s.n
	cur := s.clients[role]
	if cur == nil {
		return fmt.Sprintf("the %s certificate is not usable (%v): a re-issue completes from this record", role, s.clientErr[role])
	}
	if cur.SerialNumber.Cmp(serial) == 0 {
		return "the re-issue away from the role's current certificate is not complete (in progress, or interrupted: the next `joblet certs reissue` completes it from this record)"
	}
	key, err := pki.ParseKey([]byte(s.vals[n.ClientKey(role)]))
	if err != nil || pki.MatchesKey(cur, key) != nil {
		return "the " + string(role) + " key does not match its certificate (a re-issue in progress, or interrupted): left until it is complete"
	}
	if err := pki.VerifyLeaf(cur, s.trust, x509.ExtKeyUsageClientAuth, s.now); err != nil {
		return "the " + string(role) + " certificate does not verify under the fleet's trust (" + err.Error() + "): re-issue the role first"
	}
	keyPEM, certPEM, err := splitRecord(value, l.Name)
	if err != nil || value == "" {
		return "does not hold a certificate and key (not written by joblet?): inspect it, and remove it by hand"
	}
	pair, err := parsePair(certPEM, keyPEM, l.Name, l.Name)
	if err != nil {
		return "does not hold a matching certificate and key (not written by joblet?): inspect it, and remove it by hand"
	}
	// A record whose pair is newer than the role's certificate: a
	// certificate from before it put back (the certificate changed after
	// the record was made) keeps it. One made after the certificate last
	// changed is a pair that never became the role's: a slow run from an
	// older certificate made it, wrote nothing (stillReplacing: every run
	// from that certificate writes nothing now) and could not remove it
	// (the rotation function may not; the store refused). It holds a
	// private key no one uses: it goes after the grace, as a completed
	// re-issue's record.
	if !cur.Equal(pair.Cert) && cur.NotBefore.Before(pair.Cert.NotBefore) && (certChanged.IsZero() || !l.Created.After(certChanged)) {
		return fmt.Sprintf("the %s certificate (serial %s) is older than this record's (serial %s): not a completed re-issue", role, pki.SerialHex(cur.SerialNumber), pki.SerialHex(pair.Cert.SerialNumber))
	}
	if l.Created.IsZero() || certChanged.IsZero() {
		return "the store does not say when it, or the role's certificate, last changed"
	}
	last := l.Created
	if l.Changed.After(last) {
		last = l.Changed
	}
	if certChanged.After(last) {
		last = certChanged
	}
	if age := now.Sub(last); age < grace {
		return fmt.Sprintf("complete, and within the grace of %s (until %s): a run that read the replaced certificate still finds this pair", grace, last.Add(grace).UTC().Format(time.RFC3339))
	}
	return ""
}
