package sandbox

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
)

// DefaultUser is the system user jobs run as unless jobs.user says otherwise.
const DefaultUser = "joblet-job"

// jobUserAdd are useradd's options for DefaultUser: a system user with no
// home (/nonexistent, as Debian's nobody) and no login shell. The package's
// postinst creates it with the same line (TestJobUserAttributes compares).
var jobUserAdd = []string{"--system", "--no-create-home", "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin"}

// createUser makes the system user name with jobUserAdd.
func createUser(name string) ([]byte, error) {
	return exec.Command("useradd", append(append([]string{}, jobUserAdd...), name)...).CombinedOutput()
}

// JobUser resolves name (DefaultUser when empty) to a uid and gid that are
// never 0. The default user is created when missing; if that fails, jobs
// run as nobody and note says so for the caller to log.
func JobUser(name string) (uid, gid int, note string, err error) {
	if name == "" {
		name = DefaultUser
	}
	u, err := user.Lookup(name)
	if _, missing := err.(user.UnknownUserError); missing && name == DefaultUser {
		out, cerr := createUser(name)
		if cerr == nil {
			u, err = user.Lookup(name)
			note = fmt.Sprintf("created system user %s for jobs", name)
		} else {
			u, err = user.Lookup("nobody")
			note = fmt.Sprintf("could not create user %s (useradd: %v: %s): jobs run as nobody", name, cerr, out)
		}
	}
	if err != nil {
		return 0, 0, note, fmt.Errorf("job user %q: %w: create it or set jobs.user", name, err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	if uid == 0 || gid == 0 {
		return 0, 0, note, fmt.Errorf("job user %q is uid %d gid %d: jobs never run as root; set jobs.user to an unprivileged user", name, uid, gid)
	}
	return uid, gid, note, nil
}

// MakeWorkDir creates root (0700, the server's) and root/id owned by the
// job user, 0700: the job's private, writable directory.
func MakeWorkDir(root, id string, uid, gid int) (string, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return "", fmt.Errorf("jobs dir %s: %w", root, err)
	}
	dir := root + "/" + id
	if err := os.Mkdir(dir, 0o700); err != nil {
		return "", fmt.Errorf("job work dir: %w", err)
	}
	if os.Geteuid() == 0 {
		if err := os.Chown(dir, uid, gid); err != nil {
			os.Remove(dir)
			return "", fmt.Errorf("job work dir: %w", err)
		}
	}
	return dir, nil
}
