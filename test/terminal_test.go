package test

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ehsaniara/joblet/internal/testutil/reliability"
	"github.com/ehsaniara/joblet/test/harness"
)

// onTerminal runs rnx with its stdout and stderr on a new pseudo-terminal
// and returns what the terminal received.
func onTerminal(t *testing.T, env []string, rnx string, args ...string) string {
	t.Helper()
	master, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer master.Close()
	if err := unix.IoctlSetPointerInt(int(master.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal(err)
	}
	n, err := unix.IoctlGetUint32(int(master.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatal(err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	read := make(chan struct{})
	go func() { io.Copy(&got, master); close(read) }() // ends with EIO once the slave is closed
	cmd := exec.Command(rnx, args...)
	cmd.Env, cmd.Stdout, cmd.Stderr = env, slave, slave
	err = cmd.Run()
	slave.Close()
	select {
	case <-read:
	case <-time.After(5 * time.Second):
		t.Fatal("the terminal was not drained")
	}
	if err != nil {
		t.Fatalf("rnx %q on a terminal: %v\n%s", args, err, got.String())
	}
	return got.String()
}

// A job's escape sequences reach a terminal escaped (log, follow, list,
// status), and unchanged with --raw or through a pipe.
func TestJobOutputEscapedOnTerminal(t *testing.T) {
	_, rnx := harness.Bins(t)
	_, env := embeddedNode(t)
	const seq = "\x1b]0;owned\x07\x1b[2J"
	id := strings.TrimSpace(harness.MustRun(t, env, rnx, "job", "run", "printf", `%s\n`, seq).Stdout)
	harness.Eventually(t, 10*time.Second, "job done", func() error {
		if r := harness.MustRun(t, env, rnx, "job", "status", id); !strings.Contains(r.Stdout, "COMPLETED") {
			return fmt.Errorf("%s", r.Stdout)
		}
		return nil
	})
	escaped := `\x1b]0;owned\x07\x1b[2J`
	for _, args := range [][]string{{"job", "log", id}, {"job", "list"}, {"job", "status", id}, {"job", "run", "--follow", "printf", `%s\n`, seq}} {
		got := onTerminal(t, env, rnx, args...)
		if strings.ContainsRune(got, 0x1b) || strings.ContainsRune(got, 0x07) || !strings.Contains(got, escaped) {
			t.Errorf("rnx %q on a terminal: %q, want %q and no raw control characters", args, got, escaped)
		}
	}
	if got := onTerminal(t, env, rnx, "job", "log", "--raw", id); !strings.Contains(got, seq) {
		t.Errorf("--raw on a terminal: %q", got)
	}
	if r := harness.MustRun(t, env, rnx, "job", "log", id); r.Stdout != seq+"\n" {
		t.Errorf("through a pipe: %q, want the bytes unchanged", r.Stdout)
	}
	reliability.Record(t, "bad input", "a job prints an OSC title and a clear-screen sequence; rnx job log, list, status, run --follow on a terminal, --raw, and a pipe",
		fmt.Sprintf("on the terminal shown as %s; with --raw and through a pipe the bytes unchanged", escaped))
}
