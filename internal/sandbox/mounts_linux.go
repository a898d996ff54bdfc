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
//   - /dev holds only what programs expect (null, zero, full, random,
//     urandom, tty, a private pts instance): no host device (fuse, tun,
//     kvm, disks) is reachable, whatever its mode on the host;
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
	if err := minimalDev(); err != nil {
		return err
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

// devNodes are the host device nodes a job gets: harmless, and what
// programs open without asking.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// minimalDev replaces /dev with a tmpfs holding devNodes (bound from the
// host's), a private devpts instance, /dev/shm and the usual symlinks.
func minimalDev() error {
	// Detached clones of the host's nodes, taken before /dev is covered.
	clones := map[string]int{}
	defer func() {
		for _, fd := range clones {
			unix.Close(fd)
		}
	}()
	for _, n := range devNodes {
		fd, err := unix.OpenTree(unix.AT_FDCWD, "/dev/"+n, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
		if err != nil {
			return fmt.Errorf("keep /dev/%s for the job (open_tree): %w", n, err)
		}
		clones[n] = fd
	}
	// nodev: nothing created on it is a device; the bound nodes are
	// mounts of their own.
	if err := unix.Mount("tmpfs", "/dev", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=0755,size=64k"); err != nil {
		return fmt.Errorf("mount a private /dev: %w", err)
	}
	for n, fd := range clones {
		p := "/dev/" + n
		if err := os.WriteFile(p, nil, 0o666); err != nil {
			return fmt.Errorf("mount point %s: %w", p, err)
		}
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			return fmt.Errorf("mount %s (move_mount): %w", p, err)
		}
	}
	for _, d := range []string{"/dev/pts", "/dev/shm"} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("%s: %w", d, err)
		}
	}
	if err := unix.Mount("devpts", "/dev/pts", "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mount a private /dev/pts: %w", err)
	}
	if err := tmpfs("/dev/shm", "mode=1777,size=25%"); err != nil {
		return err
	}
	for link, target := range map[string]string{"ptmx": "pts/ptmx", "fd": "/proc/self/fd", "stdin": "/proc/self/fd/0",
		"stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2"} {
		if err := os.Symlink(target, "/dev/"+link); err != nil {
			return fmt.Errorf("/dev/%s: %w", link, err)
		}
	}
	// Read-only from here: the job cannot add anything to its /dev.
	ro := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/dev", 0, ro); err != nil {
		return fmt.Errorf("make /dev read-only: %w", err)
	}
	return nil
}
