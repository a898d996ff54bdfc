package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
)

func TestWriteAllIsAllOrNothing(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	if err := WriteAll([]File{{a, []byte("a1"), 0o600}, {b, []byte("b1"), 0o600}}); err != nil {
		t.Fatal(err)
	}
	// The second target is in a directory that does not exist: the write
	// fails, and the first file keeps its old content.
	err := WriteAll([]File{{a, []byte("a2"), 0o600}, {filepath.Join(dir, "missing", "c"), []byte("c"), 0o600}})
	if err == nil {
		t.Fatal("expected an error")
	}
	if got, _ := os.ReadFile(a); string(got) != "a1" {
		t.Fatalf("a = %q after a failed set", got)
	}
	// A directory where a file should go is refused before anything moves.
	os.Mkdir(filepath.Join(dir, "d"), 0o700)
	if err := WriteAll([]File{{a, []byte("a3"), 0o600}, {filepath.Join(dir, "d"), []byte("x"), 0o600}}); err == nil {
		t.Fatal("expected an error for a directory target")
	}
	if got, _ := os.ReadFile(a); string(got) != "a1" {
		t.Fatalf("a = %q", got)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 3 {
		t.Fatalf("temp files left behind: %v", entries)
	}
	fi, _ := os.Stat(b)
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", fi.Mode().Perm())
	}
}

func TestCreateExclusive(t *testing.T) {
	p := filepath.Join(t.TempDir(), "s")
	var wins atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := CreateExclusive(p, []byte("v"), 0o600)
			if err == nil {
				wins.Add(1)
			} else if !errors.Is(err, fs.ErrExist) {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if wins.Load() != 1 {
		t.Fatalf("%d winners", wins.Load())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("temp files left: %d entries", len(entries))
	}
}
