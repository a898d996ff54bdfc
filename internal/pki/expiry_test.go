package pki_test

import (
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/pki"
)

func TestExpiryTextShowsTimeWhenSoon(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	if got := pki.ExpiryText(now.Add(3*time.Hour+30*time.Second), now); got != "2026-01-01 15:00:30 UTC" {
		t.Errorf("a certificate expiring in hours: %q", got)
	}
	if got := pki.ExpiryText(now.Add(400*24*time.Hour), now); got != "2027-02-05" {
		t.Errorf("a certificate expiring in a year: %q", got)
	}
}
