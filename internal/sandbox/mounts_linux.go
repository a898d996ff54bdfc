package sandbox

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// setupMounts builds the job's view of the filesystem, inside its own mount
// namespace (nothing here is visible to the host):
//
//   - everything is read-only and nosuid, so host binaries and libraries run
//     but nothing of the node can be changed;
//   - /proc is a fresh procfs of the job's PID namespace: the job sees and
//     can signal only its own processes;
//   - /tmp and /dev/shm are private tmpfs mounts;
//   - every Hide path is masked (an empty tmpfs, or /dev/null for a file);
//   - the work dir is the one writable place of the node's disk, mounted at
//     its own path even when a Hide path (the jobs dir) covers it.
func setupMounts(cfg initConfig) error {
	// Nothing done here may propagate back to the host's mounts.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private (mount namespace): %w", err)
	}
	// A detached copy of the work dir taken while it is still reachable and
	// writable: the read-only remount and the masks below do not touch it.
	work, err := unix.OpenTree(unix.AT_FDCWD, cfg.WorkDir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("open_tree %s (needs Linux ≥ 5.2): %w", cfg.WorkDir, err)
	}
	defer unix.Close(work)
	ro := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", unix.AT_RECURSIVE, ro); err != nil {
		return fmt.Errorf("remount / read-only (mount_setattr, Linux ≥ 5.12): %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount a fresh /proc for the job's PID namespace: %w", err)
	}
	if err := tmpfs("/tmp", "mode=1777,size=25%"); err != nil {
		return err
	}
	if _, err := os.Stat("/dev/shm"); err == nil {
		if err := tmpfs("/dev/shm", "mode=1777,size=25%"); err != nil {
			return err
		}
	}
	for _, p := range cfg.Hide {
		if err := hide(p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(cfg.WorkDir, 0o755); err != nil {
		return fmt.Errorf("work dir mount point %s: %w", cfg.WorkDir, err)
	}
	if err := unix.MoveMount(work, "", unix.AT_FDCWD, cfg.WorkDir, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount the work dir at %s (move_mount): %w", cfg.WorkDir, err)
	}
	return nil
}

func tmpfs(at, opts string) error {
	if err := unix.Mount("tmpfs", at, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
		return fmt.Errorf("mount a private tmpfs on %s: %w", at, err)
	}
	return nil
}

// hide masks p. A path that does not exist in the job's view (e.g. under
// the private /tmp) is already invisible.
func hide(p string) error {
	fi, err := os.Stat(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("hide %s: %w", p, err)
	}
	if fi.IsDir() {
		// Root-owned 0755 and small: the job can walk through (to its work
		// dir, when that is below) but not write.
		if err := unix.Mount("tmpfs", p, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
			return fmt.Errorf("hide %s (tmpfs over it): %w", p, err)
		}
		return nil
	}
	if err := unix.Mount("/dev/null", p, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("hide %s (bind /dev/null over it): %w", p, err)
	}
	return nil
}
