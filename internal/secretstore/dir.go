package secretstore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/ehsaniara/joblet/internal/atomicfile"
	"github.com/ehsaniara/joblet/internal/config"
)

// DirStore keeps secrets as files under a root directory: <root>/<name> is
// the current version, <root>/<name>.previous the one before and
// <root>/<name>.pending a staged one, mirroring Secrets Manager's labels. It serves the
// embedded mode (a private store under JOBLET_HOME) and on-prem fleets that
// share a disk. Directories are 0700, files 0600.
type DirStore struct{ root string }

var _ Store = (*DirStore)(nil)

// NewDirStore opens a directory store at root. The directory is created by
// the first write, so a run refused before it writes leaves nothing behind.
// A store that anyone but its owner can write (or that belongs to another
// user) is refused, like a node's config: whoever writes a bundle into it
// decides whom its nodes trust.
func NewDirStore(root string) (*DirStore, error) {
	if fi, err := os.Stat(root); err == nil && !fi.IsDir() {
		return nil, fmt.Errorf("directory store %s: not a directory", root)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("directory store %s: %w", root, err)
	}
	if err := config.CheckPrivateTree(root); err != nil {
		return nil, fmt.Errorf("directory store: %w", err)
	}
	return &DirStore{root: root}, nil
}

// checkRead refuses to read the file at p when it, or a directory from the
// root down to it, became writable by others since the store was opened: a
// running node's refresh takes no trust from there.
func (d *DirStore) checkRead(p string) error {
	rel, err := filepath.Rel(d.root, p)
	if err != nil {
		return err
	}
	at := d.root
	if err := config.CheckPrivate(at); err != nil {
		return fmt.Errorf("directory store: %w", err)
	}
	for _, part := range strings.Split(rel, string(filepath.Separator)) {
		at = filepath.Join(at, part)
		if err := config.CheckPrivate(at); err != nil {
			return fmt.Errorf("directory store: %w", err)
		}
	}
	return nil
}

func (d *DirStore) path(name string) (string, error) {
	if err := ValidatePrefix(name); err != nil {
		return "", fmt.Errorf("secret name %q: %w", name, err)
	}
	return filepath.Join(d.root, filepath.FromSlash(name)), nil
}

func (d *DirStore) Get(ctx context.Context, names []string) (map[string]string, error) {
	return d.GetStage(ctx, names, Current)
}

// Versions identifies each current value by its hash: reading a local file
// costs nothing that needs saving.
func (d *DirStore) Versions(ctx context.Context, names []string) (map[string]string, error) {
	got, err := d.Get(ctx, names)
	if err != nil {
		return nil, err
	}
	return ValueVersions(got), nil
}

func (d *DirStore) Create(ctx context.Context, s Secret) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(s.Name)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("create secret %s: %w", s.Name, err)
	}
	if err := atomicfile.CreateExclusive(p, []byte(s.Value), 0o600); err != nil {
		return fmt.Errorf("create secret %s: %w", s.Name, err)
	}
	return nil
}

func (d *DirStore) Put(ctx context.Context, name, value string) error {
	return d.staged(ctx, "put secret", name, func(p string) error {
		old, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		// Previous first: a crash between the two writes leaves the old
		// value both current and previous, never lost.
		if err := atomicfile.WriteFile(p+".previous", old, 0o600); err != nil {
			return err
		}
		return atomicfile.WriteFile(p, []byte(value), 0o600)
	})
}

var suffix = map[Stage]string{Current: "", Pending: ".pending", Previous: ".previous"}

func (d *DirStore) GetStage(ctx context.Context, names []string, st Stage) (map[string]string, error) {
	out := map[string]string{}
	for _, n := range names {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p, err := d.path(n)
		if err != nil {
			return nil, err
		}
		if err := d.checkRead(p + suffix[st]); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(p + suffix[st])
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read secret %s (%s): %w", n, st, err)
		}
		out[n] = string(b)
	}
	return out, nil
}

// staged runs f under the store lock with the path of name.
func (d *DirStore) staged(ctx context.Context, op, name string, f func(p string) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p, err := d.path(name)
	if err != nil {
		return err
	}
	unlock, err := d.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if err := f(p); err != nil {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	return nil
}

func (d *DirStore) PutPending(ctx context.Context, name, value string) error {
	return d.staged(ctx, "put pending", name, func(p string) error {
		if _, err := os.Stat(p); err != nil {
			return err
		}
		return atomicfile.WriteFile(p+".pending", []byte(value), 0o600)
	})
}

// Promote and Demote move files in an order that a crash cannot lose a
// version from: copy first, remove last; re-running completes the move.
func (d *DirStore) Promote(ctx context.Context, name string) error {
	return d.staged(ctx, "promote", name, func(p string) error {
		pending, err := os.ReadFile(p + ".pending")
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return err
		}
		cur, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if string(cur) != string(pending) {
			if err := atomicfile.WriteFile(p+".previous", cur, 0o600); err != nil {
				return err
			}
			if err := atomicfile.WriteFile(p, pending, 0o600); err != nil {
				return err
			}
		}
		return removeIfExists(p + ".pending")
	})
}

func (d *DirStore) Demote(ctx context.Context, name string) error {
	return d.staged(ctx, "demote", name, func(p string) error {
		prev, err := os.ReadFile(p + ".previous")
		if err != nil {
			return fmt.Errorf("no previous version to return to: %w", err)
		}
		cur, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p+".pending", cur, 0o600); err != nil {
			return err
		}
		if err := atomicfile.WriteFile(p, prev, 0o600); err != nil {
			return err
		}
		return removeIfExists(p + ".previous")
	})
}

func (d *DirStore) DropPending(ctx context.Context, name string) error {
	return d.staged(ctx, "drop pending", name, func(p string) error { return removeIfExists(p + ".pending") })
}

// Remove removes a secret and its pending and previous versions.
func (d *DirStore) Remove(ctx context.Context, name string) error {
	return d.staged(ctx, "remove", name, func(p string) error {
		for _, suf := range []string{"", ".pending", ".previous"} {
			if err := removeIfExists(p + suf); err != nil {
				return err
			}
		}
		return nil
	})
}

// List lists the secrets of the folder dir: the regular files directly in
// <root>/<dir>, not their .previous and .pending versions nor a write's
// temporary file. Created and Changed are the file's modification time
// (each write replaces the file; a record is created once and never
// written again). The folder and every directory
// above it must be a private directory, not a link: a name listed here
// may be removed, and must be what the store would read under it.
func (d *DirStore) List(ctx context.Context, dir string) ([]Listed, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p, err := d.path(dir)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("list %s: %w", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("list %s: %s is not a directory", dir, p)
	}
	if err := d.checkRead(p); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(p)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", dir, err)
	}
	var out []Listed
	for _, e := range ents {
		base := e.Name()
		if !e.Type().IsRegular() || strings.HasPrefix(base, ".") || strings.HasSuffix(base, ".previous") || strings.HasSuffix(base, ".pending") {
			continue
		}
		name := dir + "/" + base
		if ValidatePrefix(name) != nil {
			continue
		}
		info, err := e.Info()
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed since
		} else if err != nil {
			return nil, fmt.Errorf("list %s: %w", dir, err)
		}
		out = append(out, Listed{Name: name, Created: info.ModTime(), Changed: info.ModTime()})
	}
	return out, nil
}

var _ Lister = (*DirStore)(nil)

func removeIfExists(p string) error {
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// lock serialises writers sharing the directory (flock on <root>/.lock).
func (d *DirStore) lock() (func(), error) {
	if err := os.MkdirAll(d.root, 0o700); err != nil {
		return nil, fmt.Errorf("directory store %s: %w", d.root, err)
	}
	f, err := os.OpenFile(filepath.Join(d.root, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock directory store: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock directory store: %w", err)
	}
	return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
}

// ParseStoreSpec parses "dir:PATH".
func ParseStoreSpec(spec string) (kind, arg string, err error) {
	kind, arg, ok := strings.Cut(spec, ":")
	if !ok || arg == "" {
		return "", "", fmt.Errorf("invalid --store %q: use dir:PATH (or awssm)", spec)
	}
	return kind, arg, nil
}
