package certs

import (
	"testing"
)

// phaseOf is the one derivation of the rotation phase: every command asks it.
func TestPhaseOf(t *testing.T) {
	n := Names{Prefix: "p"}
	for _, tc := range []struct {
		name        string
		pending     map[string]string
		trusted     int
		want        Phase
		interrupted bool
	}{
		{"nothing pending, one CA", nil, 1, PhaseStable, false},
		{"pending certificate", map[string]string{n.CACert(): "c", n.CAKey(): "k"}, 2, PhaseBegun, false},
		{"pending key without its certificate", map[string]string{n.CAKey(): "k"}, 1, PhaseBegun, true},
		{"pending KMS reference without its certificate", map[string]string{n.CAKMSKey(): "arn"}, 1, PhaseBegun, true},
		{"two trusted, nothing pending", nil, 2, PhasePromoted, false},
		{"two trusted, a pending key alone (no begin writes it then)", map[string]string{n.CAKey(): "k"}, 2, PhasePromoted, false},
	} {
		got, interrupted := phaseOf(n, tc.pending, tc.trusted)
		if got != tc.want || interrupted != tc.interrupted {
			t.Errorf("%s: %s (interrupted %v), want %s (%v)", tc.name, got, interrupted, tc.want, tc.interrupted)
		}
	}
}
