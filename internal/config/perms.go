package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// $JOBLET_HOME, its config directory and the files in it hold private keys
// and decide whom a node trusts. Anyone who can write one of them (or
// replace a file in a directory they can write) can make the node trust
// their CA or serve their key, and a running server hot-reloads a replaced
// config. So they must be writable by their owner only, and owned by the
// user joblet runs as or by root.

// CheckPrivate refuses path when its group or others may write it, or when
// it belongs to a user other than this one or root, naming the fix. A path
// that does not exist passes (it will be created private).
func CheckPrivate(path string) error {
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	fix := "chmod 600 " + path
	if fi.IsDir() {
		fix = "chmod 700 " + path
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("%s is writable by others than its owner (mode %04o): anyone who can write it can change whom this node trusts; run `%s`", path, perm, fix)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		if me := os.Geteuid(); st.Uid != 0 && int(st.Uid) != me {
			return fmt.Errorf("%s belongs to uid %d, not to this user (uid %d) or root: that user can change whom this node trusts; run `chown -R %d %s` (or run joblet as uid %d)",
				path, st.Uid, me, me, path, st.Uid)
		}
	}
	return nil
}

// CheckPrivateTree applies CheckPrivate to root and everything under it:
// a directory store (embedded or shared) decides whom its nodes trust as
// much as their config does.
func CheckPrivateTree(root string) error {
	if err := CheckPrivate(root); err != nil {
		return err
	}
	// The walk does not follow a symbolic link at its start: walk what a
	// linked store directory points at.
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	return filepath.WalkDir(root, func(p string, _ fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil // gone since (a writer's temporary file): nothing to trust
		}
		if err != nil {
			return err
		}
		return CheckPrivate(p)
	})
}

// CheckHome checks a node's files where they exist: $JOBLET_HOME, its
// config directory, the server config, and the embedded store.
func CheckHome(home string) error {
	for _, p := range []string{home, filepath.Join(home, "config"), filepath.Join(home, "config", "joblet-config.yml")} {
		if err := CheckPrivate(p); err != nil {
			return err
		}
	}
	return CheckPrivateTree(filepath.Join(home, "ca"))
}

// CheckServerConfig checks the server config at path, its directory and,
// in the HOME/config/joblet-config.yml layout, HOME.
func CheckServerConfig(path string) error {
	dir := filepath.Dir(path)
	paths := []string{path, dir}
	if filepath.Base(dir) == "config" {
		paths = append(paths, filepath.Dir(dir))
	}
	for _, p := range paths {
		if err := CheckPrivate(p); err != nil {
			return err
		}
	}
	return nil
}

// CheckStore checks a directory store the server config names (embedded
// or shared): the server neither starts nor reloads from one others can
// write. Secrets Manager's access is IAM's to decide.
func CheckStore(ref StoreRef) error {
	if ref.Kind != ModeDir || ref.Dir == "" {
		return nil
	}
	if err := CheckPrivateTree(ref.Dir); err != nil {
		return fmt.Errorf("the store: %w", err)
	}
	return nil
}
