package jobs

import (
	"strings"
	"testing"
	"time"
)

func TestEnvIsCheckedAndReachesTheJob(t *testing.T) {
	m := NewManager(1<<20, time.Second)
	for env, want := range map[string]string{
		"NOEQUALS":        "has no '='",
		"1X=a":            "not a shell name",
		"A-B=a":           "not a shell name",
		"=a":              "not a shell name",
		"A=x\x00y":        "NUL",
		"PATH=/a|PATH=/b": "given twice",
	} {
		_, err := m.Start(Request{Command: "true", Env: strings.Split(env, "|")})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("env %q: %v, want %q", env, err, want)
		}
	}
	// A request's PATH replaces the default; the other defaults stay.
	s, err := m.Start(Request{Command: "/bin/sh", Args: []string{"-c", `echo "$FOO|$PATH|$LANG|$EMPTY|${EMPTY+set}"`},
		Env: []string{"FOO=bar=baz", "PATH=/bin", "EMPTY="}})
	if err != nil {
		t.Fatal(err)
	}
	waitDone(t, m, s.ID)
	if got := logs(t, m, s.ID, false); got != "bar=baz|/bin|C.UTF-8||set\n" {
		t.Fatalf("the job saw %q", got)
	}
}

func TestSnapshotCarriesTheLimitsInForce(t *testing.T) {
	m, err := New(Options{Isolation: IsolationNone, Max: Limits{MemoryBytes: 1 << 30, CPUPercent: 200, MaxProcs: 500}})
	if err != nil {
		t.Fatal(err)
	}
	s, err := m.Start(Request{Command: "true", Limits: Limits{MemoryBytes: 64 << 20, MaxProcs: 50}})
	if err != nil {
		t.Fatal(err)
	}
	want := Limits{MemoryBytes: 64 << 20, CPUPercent: DefaultCPUPercent, MaxProcs: 50, DiskBytes: DefaultDisk}
	if s.Limits != want {
		t.Fatalf("limits %+v, want %+v", s.Limits, want)
	}
	if _, err := m.Start(Request{Command: "true", Limits: Limits{CPUPercent: -1}}); err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("negative limit: %v", err)
	}
}

func TestListOrderIsStartThenID(t *testing.T) {
	t0 := time.Now()
	a := Snapshot{ID: "b", Started: t0}
	b := Snapshot{ID: "a", Started: t0.Add(time.Nanosecond)}
	c := Snapshot{ID: "c", Started: t0}
	if !Before(a, b) || Before(b, a) || !Before(a, c) || Before(c, a) || !Before(c, b) {
		t.Fatal("Before is not start time, then id")
	}
}
