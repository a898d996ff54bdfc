package test

import (
	"strings"
	"sync"
	"testing"

	"github.com/ehsaniara/joblet/test/harness"
)

// The package's moto servers. Each test that needs Secrets Manager (or
// IAM, KMS) has one of its own for as long as it runs, so tests that run
// in parallel never see each other's secrets: motoFor gives the test its
// moto, resetMoto empties it first. A test's moto is reset when the test
// ends and kept for the next one, so the package starts only as many as
// run at once; TestMain stops them. The release is a cleanup registered
// when the moto is taken, before anything the test starts with its URL,
// so (cleanups run last first) all of that has stopped when the moto goes
// to another test.
var motos struct {
	mu   sync.Mutex
	idle []*harness.Moto
	all  []*harness.Moto
	held map[string]*harness.Moto // by top-level test name
}

// topName is the name of the top-level test t belongs to.
func topName(t testing.TB) string {
	name, _, _ := strings.Cut(t.Name(), "/")
	return name
}

// motoFor returns t's moto: the one its top-level test holds, or a fresh
// (empty) one held until t ends.
func motoFor(t testing.TB) *harness.Moto {
	t.Helper()
	top := topName(t)
	motos.mu.Lock()
	if m := motos.held[top]; m != nil {
		motos.mu.Unlock()
		return m
	}
	var m *harness.Moto
	if n := len(motos.idle); n > 0 {
		m, motos.idle = motos.idle[n-1], motos.idle[:n-1]
	}
	motos.mu.Unlock()
	if m == nil {
		var err error
		if m, err = harness.StartMoto(); err != nil {
			t.Fatal(err)
		}
		motos.mu.Lock()
		motos.all = append(motos.all, m)
		motos.mu.Unlock()
	}
	motos.mu.Lock()
	if motos.held == nil {
		motos.held = map[string]*harness.Moto{}
	}
	motos.held[top] = m
	motos.mu.Unlock()
	t.Cleanup(func() {
		motos.mu.Lock()
		delete(motos.held, top)
		motos.mu.Unlock()
		// Emptied before another test takes it; one that cannot be
		// emptied is not taken again.
		if err := m.TryReset(); err != nil {
			t.Errorf("reset moto after the test: %v", err)
			return
		}
		motos.mu.Lock()
		motos.idle = append(motos.idle, m)
		motos.mu.Unlock()
	})
	return m
}

// resetMoto returns t's moto, emptied.
func resetMoto(t testing.TB) *harness.Moto {
	t.Helper()
	m := motoFor(t)
	m.Reset(t)
	return m
}

// stopMotos stops every moto the package started.
func stopMotos() {
	motos.mu.Lock()
	defer motos.mu.Unlock()
	for _, m := range motos.all {
		m.Stop()
	}
}
