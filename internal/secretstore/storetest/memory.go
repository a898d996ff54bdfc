package storetest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// MemoryStore is an in-process secretstore.Store for unit tests: it lives
// here, in a package only tests import, so no binary can be given one.
type MemoryStore struct {
	mu       sync.Mutex
	current  map[string]string
	previous map[string]string
	pending  map[string]string
	// created and changed: when each secret was created and its current
	// value last changed (List).
	created, changed map[string]time.Time
}

var _ secretstore.Store = (*MemoryStore)(nil)

func NewMemoryStore() *MemoryStore {
	return &MemoryStore{current: map[string]string{}, previous: map[string]string{}, pending: map[string]string{}, created: map[string]time.Time{}, changed: map[string]time.Time{}}
}

// locked runs f under the lock once ctx is checked.
func (m *MemoryStore) locked(ctx context.Context, f func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return f()
}

func (m *MemoryStore) Get(ctx context.Context, names []string) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]string{}
	for _, n := range names {
		if v, ok := m.current[n]; ok {
			out[n] = v
		}
	}
	return out, nil
}

func (m *MemoryStore) Create(ctx context.Context, s secretstore.Secret) error {
	return m.locked(ctx, func() error {
		if _, ok := m.current[s.Name]; ok {
			return fmt.Errorf("create secret %s: %w", s.Name, secretstore.ErrExist)
		}
		m.current[s.Name] = s.Value
		m.created[s.Name] = time.Now()
		m.changed[s.Name] = m.created[s.Name]
		return nil
	})
}

func (m *MemoryStore) Put(ctx context.Context, name, value string) error {
	return m.locked(ctx, func() error {
		old, ok := m.current[name]
		if !ok {
			return fmt.Errorf("put secret %s: %w", name, secretstore.ErrNotExist)
		}
		m.previous[name] = old
		m.current[name] = value
		m.changed[name] = time.Now()
		return nil
	})
}

// Set writes a value directly, bypassing create-only: tests use it to plant
// corrupt or half-written states.
func (m *MemoryStore) Set(name, value string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.current[name]; !ok {
		m.created[name] = time.Now()
	}
	m.current[name] = value
	m.changed[name] = time.Now()
}

// SetTimes sets when name was created and last changed, as List reports
// them (tests: a record older than a grace period).
func (m *MemoryStore) SetTimes(name string, created, changed time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.created[name], m.changed[name] = created, changed
}

// List lists the secrets of the folder dir (secretstore.Lister).
func (m *MemoryStore) List(ctx context.Context, dir string) ([]secretstore.Listed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []secretstore.Listed
	for name := range m.current {
		if rest, ok := strings.CutPrefix(name, dir+"/"); ok && rest != "" && !strings.Contains(rest, "/") {
			out = append(out, secretstore.Listed{Name: name, Created: m.created[name], Changed: m.changed[name]})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

var _ secretstore.Lister = (*MemoryStore)(nil)

// Remove removes a secret with its versions (secretstore.Remover).
func (m *MemoryStore) Remove(_ context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.current, name)
	delete(m.pending, name)
	delete(m.previous, name)
	delete(m.created, name)
	delete(m.changed, name)
	return nil
}

// Delete removes a secret (tests).
func (m *MemoryStore) Delete(name string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.current, name)
}

func (m *MemoryStore) stage(st secretstore.Stage) map[string]string {
	switch st {
	case secretstore.Pending:
		return m.pending
	case secretstore.Previous:
		return m.previous
	}
	return m.current
}

// Versions identifies each current value by its hash.
func (m *MemoryStore) Versions(ctx context.Context, names []string) (map[string]string, error) {
	got, err := m.Get(ctx, names)
	if err != nil {
		return nil, err
	}
	return secretstore.ValueVersions(got), nil
}

func (m *MemoryStore) GetStage(ctx context.Context, names []string, st secretstore.Stage) (map[string]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]string{}
	for _, n := range names {
		if v, ok := m.stage(st)[n]; ok {
			out[n] = v
		}
	}
	return out, nil
}

func (m *MemoryStore) PutPending(ctx context.Context, name, value string) error {
	return m.locked(ctx, func() error {
		if _, ok := m.current[name]; !ok {
			return fmt.Errorf("put pending %s: %w", name, secretstore.ErrNotExist)
		}
		m.pending[name] = value
		return nil
	})
}

func (m *MemoryStore) Promote(ctx context.Context, name string) error {
	return m.locked(ctx, func() error {
		p, ok := m.pending[name]
		if !ok {
			return nil
		}
		m.previous[name] = m.current[name]
		m.current[name] = p
		m.changed[name] = time.Now()
		delete(m.pending, name)
		return nil
	})
}

func (m *MemoryStore) Demote(ctx context.Context, name string) error {
	return m.locked(ctx, func() error {
		prev, ok := m.previous[name]
		if !ok {
			return fmt.Errorf("demote %s: no previous version to return to", name)
		}
		m.pending[name] = m.current[name]
		m.current[name] = prev
		m.changed[name] = time.Now()
		delete(m.previous, name)
		return nil
	})
}

func (m *MemoryStore) DropPending(ctx context.Context, name string) error {
	return m.locked(ctx, func() error {
		delete(m.pending, name)
		return nil
	})
}
