package certs

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

// WriteText prints the status report for a terminal: one block per
// certificate, the revocations by name, then the problems.
func (r *Report) WriteText(w io.Writer) {
	mark := map[int]string{OK: "✅", Attention: "⚠️ ", Broken: "❌"}
	fmt.Fprintf(w, "store: %s", r.Store)
	if r.Phase != "" {
		fmt.Fprintf(w, " (CA rotation: %s)", r.Phase)
	}
	fmt.Fprintln(w)
	if r.CAKey != "" {
		fmt.Fprintf(w, "CA key: %s\n", r.CAKey)
	}
	if r.NextStep != "" {
		fmt.Fprintf(w, "rotation, next: %s\n", r.NextStep)
	}
	for _, c := range r.Certificates {
		fmt.Fprintf(w, "%s %s\n     %s\n     subject %s, serial %s\n     sha256 %s\n     valid %s to %s (%d days left)\n",
			mark[c.Level], c.Name, c.Where, c.Subject, c.Serial, c.Fingerprint,
			c.NotBefore.Format("2006-01-02"), pki.ExpiryText(c.NotAfter, time.Now()), c.DaysLeft)
		if len(c.SANs) > 0 {
			fmt.Fprintf(w, "     SANs %s\n", strings.Join(c.SANs, ", "))
		}
		if len(c.Permitted) > 0 {
			fmt.Fprintf(w, "     may sign for %s\n", strings.Join(c.Permitted, ", "))
		}
		if c.DueAt != nil {
			fmt.Fprintf(w, "     due for a new key at %s\n", c.DueAt.Format(time.RFC3339))
		}
		if c.IssuedBy != "" {
			fmt.Fprintf(w, "     issued by the %s\n", c.IssuedBy)
		}
	}
	for _, rv := range r.Revocations {
		fmt.Fprintf(w, "🚫 revoked serial %s at %s (%s)\n", rv.Serial, rv.RevokedAt.Format(time.RFC3339), rv.ReasonName)
	}
	for _, ro := range r.Rotations {
		state := "not rotated by the store"
		if ro.Enabled {
			state = "rotated " + ro.Schedule + " by " + ro.Function
		}
		last := "never rotated"
		if ro.LastRotated != nil {
			last = "last rotated " + ro.LastRotated.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(w, "🔁 %s: %s; %s\n", ro.Secret, state, last)
	}
	if p := r.People; p != nil {
		if p.PolicyVersion != 0 {
			fmt.Fprintf(w, "👤 identity policy version %d (%d rules), valid until %s\n", p.PolicyVersion, p.Rules, p.PolicyExpires.Format(time.RFC3339))
		}
		shared := "none"
		if len(p.SharedRoles) > 0 {
			shared = fmt.Sprintf("%d (%s): each one key copied to everyone holding that role's config", len(p.SharedRoles), joinRoles(p.SharedRoles))
		}
		fmt.Fprintf(w, "👤 shared role certificates nodes accept: %s\n", shared)
		if len(p.RefusedShared) > 0 {
			fmt.Fprintf(w, "👤 refused as shared (people log in for them): %s\n", joinRoles(p.RefusedShared))
		}
	}
	for _, n := range r.Notices {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "all good")
		return
	}
	fmt.Fprintln(w, "problems:")
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
}

// WriteText prints a rotation status for a terminal; store names the store.
func (st *RotationStatus) WriteText(w io.Writer, store string) {
	fmt.Fprintf(w, "CA rotation (%s): phase %s\n", store, st.Phase)
	fmt.Fprintf(w, "  current CA  serial %s, sha256 %s, expires %s, key: %s\n", st.Current.Serial, st.Current.Fingerprint, pki.ExpiryText(st.Current.NotAfter, time.Now()), st.CurrentKey)
	if st.Pending != nil {
		fmt.Fprintf(w, "  pending CA  serial %s, sha256 %s, expires %s, key: %s\n", st.Pending.Serial, st.Pending.Fingerprint, pki.ExpiryText(st.Pending.NotAfter, time.Now()), st.PendingKey)
	}
	for _, t := range st.Trusted {
		fmt.Fprintf(w, "  trusted     serial %s, sha256 %s\n", t.Serial, t.Fingerprint)
	}
	for _, role := range pki.Roles {
		from := st.Clients[string(role)]
		if from == "current" {
			from = "current CA"
		}
		fmt.Fprintf(w, "  %-10s client certificate from the %s\n", role, from)
	}
	for _, n := range st.Nodes {
		fmt.Fprintf(w, "  node %-22s %s\n", n.Address, n.Summary)
	}
	fmt.Fprintf(w, "next: %s\n", st.NextStep)
}

func joinRoles(rs []pki.Role) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = string(r)
	}
	return strings.Join(out, ", ")
}
