package sandbox

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// setupMounts builds the job's view of the filesystem, inside its own mount
// namespace (nothing here is visible to the host):
//
//   - everything is read-only and nosuid, so host binaries and libraries run
//     but nothing of the node can be changed;
//   - /proc is a fresh procfs of the job's PID namespace: the job sees and
//     can signal only its own processes;
//   - the work dir (HOME), /tmp and /dev/shm are directories of one private
//     tmpfs of the job's disk size (see jobFiles): nothing a job writes
//     reaches the node's disk, and past the size a write fails with ENOSPC;
//   - /dev holds only what programs expect (null, zero, full, random,
//     urandom, tty, a private pts instance): no host device (fuse, tun,
//     kvm, disks) is reachable, whatever its mode on the host;
//   - every Hide path is masked (an empty tmpfs, or /dev/null for a file);
//   - the work dir is mounted at its own path even when a Hide path (the
//     jobs dir) covers it.
func setupMounts(cfg initConfig) error {
	// Nothing done here may propagate back to the host's mounts.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("make / private (mount namespace): %w", err)
	}
	files, err := jobFiles(cfg)
	if err != nil {
		return err
	}
	defer files.close()
	ro := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY | unix.MOUNT_ATTR_NOSUID}
	if err := unix.MountSetattr(unix.AT_FDCWD, "/", unix.AT_RECURSIVE, ro); err != nil {
		return fmt.Errorf("remount / read-only (mount_setattr, Linux ≥ 5.12): %w", err)
	}
	if err := unix.Mount("proc", "/proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mount a fresh /proc for the job's PID namespace: %w", err)
	}
	if err := files.place("tmp", "/tmp"); err != nil {
		return err
	}
	if err := minimalDev(files); err != nil {
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
	return files.place("home", cfg.WorkDir)
}

// jobFS is the job's files: one detached tmpfs (fsopen/fsmount, so it is
// never reachable at a path of its own) holding home, tmp and shm, each
// mounted where the job sees it. Its size is the job's disk limit, and its
// pages are charged to the job's memory cgroup; it goes with the job's
// mount namespace when the job ends, so nothing is left to clean up, even
// after the server is killed.
//
// Chosen over the alternatives for the job's disk: a loop-mounted image
// needs /dev/loop*, which the packaged unit's PrivateDevices=yes removes;
// project quotas need the node's filesystem mounted with prjquota (XFS, or
// ext4 with the feature), which the root filesystem is not; a cgroup
// cannot bound bytes on disk.
type jobFS struct{ fd int }

func jobFiles(cfg initConfig) (jobFS, error) {
	opts := map[string]string{"size": "50%", "mode": "0755"} // 50%: tmpfs's default, bounded by the memory cgroup
	if cfg.Disk > 0 {
		opts["size"] = strconv.FormatInt(cfg.Disk, 10)
		// One inode per page of the limit: empty files cost kernel memory
		// that cgroup v1 may not charge to the job.
		opts["nr_inodes"] = strconv.FormatInt(max(cfg.Disk/4096, 1024), 10)
	}
	fs, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return jobFS{}, fmt.Errorf("the job's files: fsopen tmpfs (needs Linux ≥ 5.2): %w", err)
	}
	defer unix.Close(fs)
	for k, v := range opts {
		if err := unix.FsconfigSetString(fs, k, v); err != nil {
			return jobFS{}, fmt.Errorf("the job's files: tmpfs %s=%s: %w", k, v, err)
		}
	}
	if err := unix.FsconfigCreate(fs); err != nil {
		return jobFS{}, fmt.Errorf("the job's files: create the tmpfs (size %s): %w", opts["size"], err)
	}
	fd, err := unix.Fsmount(fs, unix.FSMOUNT_CLOEXEC, unix.MOUNT_ATTR_NOSUID|unix.MOUNT_ATTR_NODEV)
	if err != nil {
		return jobFS{}, fmt.Errorf("the job's files: fsmount: %w", err)
	}
	j := jobFS{fd: fd}
	for _, d := range []struct {
		name     string
		mode     uint32
		uid, gid int
	}{{"home", 0o700, cfg.UID, cfg.GID}, {"tmp", 0o1777, 0, 0}, {"shm", 0o1777, 0, 0}} {
		err := unix.Mkdirat(fd, d.name, d.mode)
		if err == nil {
			err = unix.Fchownat(fd, d.name, d.uid, d.gid, 0)
		}
		if err == nil {
			err = unix.Fchmodat(fd, d.name, d.mode, 0) // past the umask
		}
		if err != nil {
			j.close()
			return jobFS{}, fmt.Errorf("the job's files: %s: %w", d.name, err)
		}
	}
	return j, nil
}

// place mounts the directory dir of the job's files at the path at.
func (j jobFS) place(dir, at string) error {
	sub, err := unix.OpenTree(j.fd, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return fmt.Errorf("the job's files: open_tree %s: %w", dir, err)
	}
	defer unix.Close(sub)
	if err := unix.MoveMount(sub, "", unix.AT_FDCWD, at, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("mount the job's %s at %s (move_mount): %w", dir, at, err)
	}
	return nil
}

func (j jobFS) close() { unix.Close(j.fd) }

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
// host's), a private devpts instance, /dev/shm (the job's files' shm) and
// the usual symlinks.
func minimalDev(files jobFS) error {
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
	if err := files.place("shm", "/dev/shm"); err != nil {
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
