// Package atomicfile writes files so that a reader, or a crash, sees either
// the old content or the new, never a mix: temp file in the same directory,
// fsync, rename, fsync of the directory.
package atomicfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// File is one file of a set written together.
type File struct {
	Path string
	Data []byte
	Perm os.FileMode
}

// WriteFile replaces path with data, mode perm.
func WriteFile(path string, data []byte, perm os.FileMode) error {
	return WriteAll([]File{{Path: path, Data: data, Perm: perm}})
}

// WriteAll writes every file to a temporary sibling first and renames them
// into place only when all were written, so a failure while writing (disk
// full, a path that is a directory) leaves every previous file untouched.
func WriteAll(files []File) (err error) {
	tmps := make([]string, 0, len(files))
	defer func() {
		if err != nil {
			for _, t := range tmps {
				os.Remove(t)
			}
		}
	}()
	for _, f := range files {
		if fi, statErr := os.Stat(f.Path); statErr == nil && fi.IsDir() {
			return fmt.Errorf("write %s: it is a directory; move it away and re-run", f.Path)
		}
		tmp, err := writeTemp(f)
		if err != nil {
			return err
		}
		tmps = append(tmps, tmp)
	}
	dirs := map[string]bool{}
	for i, f := range files {
		if err := os.Rename(tmps[i], f.Path); err != nil {
			return fmt.Errorf("write %s: %w", f.Path, err)
		}
		dirs[filepath.Dir(f.Path)] = true
	}
	tmps = nil
	for d := range dirs {
		if err := syncDir(d); err != nil {
			return err
		}
	}
	return nil
}

// CreateExclusive writes data to path only if path does not exist yet,
// returning an error that errors.Is(err, fs.ErrExist) otherwise. The content
// is written to a temp file and hard-linked into place: link(2) is as
// exclusive as O_CREAT|O_EXCL, and unlike it never exposes a half-written
// file to a concurrent reader or after a crash.
func CreateExclusive(path string, data []byte, perm os.FileMode) error {
	tmp, err := writeTemp(File{Path: path, Data: data, Perm: perm})
	if err != nil {
		return err
	}
	defer os.Remove(tmp)
	if err := os.Link(tmp, path); err != nil {
		var le *os.LinkError
		if errors.As(err, &le) {
			return fmt.Errorf("create %s: %w", path, le.Err)
		}
		return err
	}
	return syncDir(filepath.Dir(path))
}

func writeTemp(f File) (string, error) {
	dir := filepath.Dir(f.Path)
	t, err := os.CreateTemp(dir, "."+filepath.Base(f.Path)+".tmp-*")
	if err != nil {
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	name := t.Name()
	fail := func(err error) (string, error) {
		t.Close()
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	if err := t.Chmod(f.Perm); err != nil {
		return fail(err)
	}
	if _, err := t.Write(f.Data); err != nil {
		return fail(err)
	}
	if err := t.Sync(); err != nil {
		return fail(err)
	}
	if err := t.Close(); err != nil {
		os.Remove(name)
		return "", fmt.Errorf("write %s: %w", f.Path, err)
	}
	return name, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}
