package server

import (
	"testing"
	"time"
)

// Refreshes are spread within ±10% of the interval, never outside it.
func TestJitteredStaysWithinTenPercent(t *testing.T) {
	d := 5 * time.Minute
	seen := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		j := jittered(d)
		if j < d*9/10 || j > d*11/10 {
			t.Fatalf("jittered(%s) = %s, outside ±10%%", d, j)
		}
		seen[j] = true
	}
	if len(seen) < 100 {
		t.Fatalf("only %d distinct waits in 1000: not spread", len(seen))
	}
	if jittered(0) != 0 {
		t.Fatal("a zero interval must stay zero")
	}
}
