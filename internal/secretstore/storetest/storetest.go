// Package storetest is the contract of secretstore.Store as a test suite,
// run against every implementation (and against moto for Secrets Manager).
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ehsaniara/joblet/internal/secretstore"
)

// Run checks the Store contract. newStore returns an empty store each call;
// prefix namespaces the names it uses.
func Run(t *testing.T, newStore func(t *testing.T) secretstore.Store, prefix string) {
	ctx := context.Background()

	t.Run("missing names are absent, not errors", func(t *testing.T) {
		s := newStore(t)
		got, err := s.Get(ctx, []string{prefix + "/nope", prefix + "/nope2"})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 0 {
			t.Fatalf("got %v, want nothing", got)
		}
	})

	t.Run("create then get", func(t *testing.T) {
		s := newStore(t)
		if err := s.Create(ctx, secretstore.Secret{Name: prefix + "/a", Value: "-----BEGIN X-----\nA\n-----END X-----\n", Description: "d"}); err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, []string{prefix + "/a", prefix + "/b"})
		if err != nil {
			t.Fatal(err)
		}
		if got[prefix+"/a"] != "-----BEGIN X-----\nA\n-----END X-----\n" {
			t.Fatalf("value: %q", got[prefix+"/a"])
		}
		if _, ok := got[prefix+"/b"]; ok {
			t.Fatal("b should be absent")
		}
	})

	t.Run("create is create-only", func(t *testing.T) {
		s := newStore(t)
		if err := s.Create(ctx, secretstore.Secret{Name: prefix + "/x", Value: "one"}); err != nil {
			t.Fatal(err)
		}
		err := s.Create(ctx, secretstore.Secret{Name: prefix + "/x", Value: "two"})
		if !errors.Is(err, secretstore.ErrExist) {
			t.Fatalf("second create: got %v, want ErrExist", err)
		}
		got, _ := s.Get(ctx, []string{prefix + "/x"})
		if got[prefix+"/x"] != "one" {
			t.Fatalf("the first value was overwritten: %q", got[prefix+"/x"])
		}
	})

	t.Run("concurrent creates: exactly one wins", func(t *testing.T) {
		s := newStore(t)
		const n = 10
		var wins atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				err := s.Create(ctx, secretstore.Secret{Name: prefix + "/race", Value: fmt.Sprint(i)})
				switch {
				case err == nil:
					wins.Add(1)
				case !errors.Is(err, secretstore.ErrExist):
					errs <- err
				}
			}(i)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if wins.Load() != 1 {
			t.Fatalf("%d creates won, want exactly 1", wins.Load())
		}
	})

	t.Run("put replaces current, put on missing is ErrNotExist", func(t *testing.T) {
		s := newStore(t)
		if err := s.Put(ctx, prefix+"/p", "v"); !errors.Is(err, secretstore.ErrNotExist) {
			t.Fatalf("put on missing: got %v, want ErrNotExist", err)
		}
		if err := s.Create(ctx, secretstore.Secret{Name: prefix + "/p", Value: "v1"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Put(ctx, prefix+"/p", "v2"); err != nil {
			t.Fatal(err)
		}
		got, _ := s.Get(ctx, []string{prefix + "/p"})
		if got[prefix+"/p"] != "v2" {
			t.Fatalf("after put: %q", got[prefix+"/p"])
		}
	})

	t.Run("staged versions: pending, promote, demote, drop", func(t *testing.T) {
		s := newStore(t)
		name := prefix + "/ca"
		get := func(st secretstore.Stage) string {
			t.Helper()
			v, err := s.GetStage(ctx, []string{name}, st)
			if err != nil {
				t.Fatal(err)
			}
			return v[name]
		}
		current := func() string {
			t.Helper()
			v, err := s.Get(ctx, []string{name})
			if err != nil {
				t.Fatal(err)
			}
			return v[name]
		}
		if err := s.PutPending(ctx, name, "x"); !errors.Is(err, secretstore.ErrNotExist) {
			t.Fatalf("pending on a missing secret: %v", err)
		}
		if err := s.Create(ctx, secretstore.Secret{Name: name, Value: "old"}); err != nil {
			t.Fatal(err)
		}
		if got := get(secretstore.Pending); got != "" {
			t.Fatalf("pending before any: %q", got)
		}
		for i := 0; i < 2; i++ { // the same value twice is a no-op
			if err := s.PutPending(ctx, name, "new"); err != nil {
				t.Fatal(err)
			}
		}
		if current() != "old" || get(secretstore.Pending) != "new" {
			t.Fatalf("after pending: current %q pending %q", current(), get(secretstore.Pending))
		}
		for i := 0; i < 2; i++ { // re-running promote changes nothing more
			if err := s.Promote(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		if current() != "new" || get(secretstore.Previous) != "old" || get(secretstore.Pending) != "" {
			t.Fatalf("after promote: current %q previous %q pending %q", current(), get(secretstore.Previous), get(secretstore.Pending))
		}
		if err := s.Demote(ctx, name); err != nil {
			t.Fatal(err)
		}
		if current() != "old" || get(secretstore.Pending) != "new" {
			t.Fatalf("after demote: current %q pending %q", current(), get(secretstore.Pending))
		}
		if err := s.DropPending(ctx, name); err != nil {
			t.Fatal(err)
		}
		if current() != "old" || get(secretstore.Pending) != "" {
			t.Fatalf("after drop: current %q pending %q", current(), get(secretstore.Pending))
		}
		// The same value pending again after a drop (a rotation aborted,
		// then begun again with the CA its record names) is pending.
		if err := s.PutPending(ctx, name, "new"); err != nil {
			t.Fatal(err)
		}
		if current() != "old" || get(secretstore.Pending) != "new" {
			t.Fatalf("pending again after drop: current %q pending %q", current(), get(secretstore.Pending))
		}
	})

	t.Run("versions change with the current value, and only then", func(t *testing.T) {
		s := newStore(t)
		a, b, missing := prefix+"/va", prefix+"/vb", prefix+"/vmissing"
		for _, n := range []string{a, b} {
			if err := s.Create(ctx, secretstore.Secret{Name: n, Value: "v1"}); err != nil {
				t.Fatal(err)
			}
		}
		v1, err := s.Versions(ctx, []string{a, b, missing})
		if err != nil {
			t.Fatal(err)
		}
		if len(v1) != 2 || v1[a] == "" || v1[b] == "" {
			t.Fatalf("versions %v: want a and b, not the missing name", v1)
		}
		if err := s.Put(ctx, a, "v2"); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPending(ctx, b, "next"); err != nil {
			t.Fatal(err)
		}
		v2, err := s.Versions(ctx, []string{a, b, missing})
		if err != nil {
			t.Fatal(err)
		}
		if v2[a] == v1[a] || v2[b] != v1[b] {
			t.Fatalf("after Put(a) and PutPending(b): %v, was %v (a must change, b must not)", v2, v1)
		}
	})

	t.Run("list a folder, and remove", func(t *testing.T) {
		s := newStore(t)
		ls, ok := s.(secretstore.Lister)
		if !ok {
			t.Skip("not a Lister")
		}
		before := time.Now().Add(-time.Minute)
		for _, n := range []string{"/f/a", "/f/b", "/f/sub/c", "/fx/d", "/F/e"} {
			if err := s.Create(ctx, secretstore.Secret{Name: prefix + n, Value: "v"}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.Put(ctx, prefix+"/f/a", "v2"); err != nil {
			t.Fatal(err)
		}
		if err := s.PutPending(ctx, prefix+"/f/b", "v3"); err != nil {
			t.Fatal(err)
		}
		list := func() map[string]secretstore.Listed {
			got, err := ls.List(ctx, prefix+"/f")
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]secretstore.Listed{}
			for _, l := range got {
				if _, dup := out[l.Name]; dup {
					t.Fatalf("%s listed twice", l.Name)
				}
				out[l.Name] = l
			}
			return out
		}
		got := list()
		if len(got) != 2 || got[prefix+"/f/a"].Name == "" || got[prefix+"/f/b"].Name == "" {
			t.Fatalf("listed %v, want %s/f/a and %s/f/b", got, prefix, prefix)
		}
		for n, l := range got {
			if l.Created.Before(before) || l.Changed.Before(l.Created) || l.Changed.After(time.Now().Add(time.Minute)) {
				t.Fatalf("%s created %v, changed %v: not about now, or changed before created", n, l.Created, l.Changed)
			}
		}
		rm, ok := s.(secretstore.Remover)
		if !ok {
			return
		}
		if err := rm.Remove(ctx, prefix+"/f/a"); err != nil {
			t.Fatal(err)
		}
		if got := list(); len(got) != 1 || got[prefix+"/f/b"].Name == "" {
			t.Fatalf("after removing %s/f/a: %v", prefix, got)
		}
		if empty, err := ls.List(ctx, prefix+"/none"); err != nil || len(empty) != 0 {
			t.Fatalf("an empty folder: %v %v", empty, err)
		}
	})

	t.Run("cancelled context", func(t *testing.T) {
		s := newStore(t)
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := s.Get(cctx, []string{prefix + "/a"}); err == nil {
			t.Fatal("Get with a cancelled context succeeded")
		}
		if err := s.Create(cctx, secretstore.Secret{Name: prefix + "/c", Value: "v"}); err == nil {
			t.Fatal("Create with a cancelled context succeeded")
		}
	})
}
