package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckPrivate(t *testing.T) {
	home := t.TempDir()
	dir := filepath.Join(home, "config")
	os.Mkdir(dir, 0o700)
	file := filepath.Join(dir, "joblet-config.yml")
	os.WriteFile(file, []byte("x"), 0o600)
	if err := CheckHome(home); err != nil {
		t.Fatalf("a private home: %v", err)
	}
	if err := CheckPrivate(filepath.Join(home, "missing")); err != nil {
		t.Fatalf("a missing path: %v", err)
	}
	for _, tc := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{home, 0o777, "run `chmod 700 " + home + "`"},
		{dir, 0o770, "run `chmod 700 " + dir + "`"},
		{file, 0o666, "run `chmod 600 " + file + "`"},
		{file, 0o620, "mode 0620"},
	} {
		os.Chmod(tc.path, tc.mode)
		err := CheckHome(home)
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "writable by others") {
			t.Errorf("%s mode %04o: %v, want %q", tc.path, tc.mode, err, tc.want)
		}
		if err := CheckServerConfig(file); err == nil {
			t.Errorf("%s mode %04o: the server config passed", tc.path, tc.mode)
		}
		os.Chmod(tc.path, map[bool]os.FileMode{true: 0o700, false: 0o600}[tc.path != file])
	}
	// Readable by others is a warning elsewhere, not a refusal.
	os.Chmod(home, 0o755)
	if err := CheckHome(home); err != nil {
		t.Fatalf("mode 0755: %v", err)
	}
	if os.Geteuid() != 0 {
		return // only root can give a file away
	}
	os.Chown(dir, 12345, 12345)
	err := CheckHome(home)
	if err == nil || !strings.Contains(err.Error(), "belongs to uid 12345") || !strings.Contains(err.Error(), "chown -R 0 "+dir) {
		t.Fatalf("owned by another user: %v", err)
	}
}

func TestCheckPrivateTree(t *testing.T) {
	root := filepath.Join(t.TempDir(), "ca")
	if err := CheckPrivateTree(root); err != nil {
		t.Fatalf("a store not made yet: %v", err)
	}
	sub := filepath.Join(root, "joblet")
	os.MkdirAll(sub, 0o700)
	file := filepath.Join(sub, "ca-bundle")
	os.WriteFile(file, []byte("x"), 0o600)
	if err := CheckPrivateTree(root); err != nil {
		t.Fatalf("a private store: %v", err)
	}
	link := filepath.Join(t.TempDir(), "link")
	os.Symlink(root, link)
	for _, tc := range []struct {
		path string
		mode os.FileMode
		want string
	}{
		{root, 0o777, "run `chmod 700 " + root + "`"},
		{sub, 0o730, "run `chmod 700 " + sub + "`"},
		{file, 0o602, "run `chmod 600 " + file + "`"},
	} {
		os.Chmod(tc.path, tc.mode)
		for _, at := range []string{root, link} {
			want := tc.want
			if at == link {
				want = "writable by others" // named as reached (through the link when it is the start)
			}
			if err := CheckPrivateTree(at); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("%s mode %04o, checked at %s: %v, want %q", tc.path, tc.mode, at, err, want)
			}
		}
		if err := CheckStore(StoreRef{Kind: ModeDir, Dir: root}); err == nil {
			t.Errorf("%s mode %04o: CheckStore passed", tc.path, tc.mode)
		}
		os.Chmod(tc.path, map[bool]os.FileMode{true: 0o700, false: 0o600}[tc.path != file])
	}
}
