package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func waitDone(t *testing.T, m *Manager, id string) Snapshot {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		s, err := m.Status(id)
		if err != nil {
			t.Fatal(err)
		}
		if s.Status != Running {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("job %s still running", id)
	return Snapshot{}
}

func logs(t *testing.T, m *Manager, id string, follow bool) string {
	t.Helper()
	out, errOut := streams(t, m, id, follow)
	return out + errOut
}

// streams is a job's stdout and stderr as Logs sends them.
func streams(t *testing.T, m *Manager, id string, follow bool) (stdout, stderr string) {
	t.Helper()
	var b [3]bytes.Buffer
	if err := m.Logs(context.Background(), id, follow, func(c Chunk) error {
		if c.Stream != Stdout && c.Stream != Stderr {
			t.Errorf("chunk without a stream: %+v", c)
		}
		b[c.Stream].Write(c.Data)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return b[Stdout].String(), b[Stderr].String()
}

func TestRunCapturesOutputAndExit(t *testing.T) {
	m := NewManager(1<<16, time.Second)
	s, err := m.Run("sh", []string{"-c", "echo out; echo err >&2; exit 3"}, "developer")
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != Running || s.StartedBy != "developer" {
		t.Fatalf("%+v", s)
	}
	done := waitDone(t, m, s.ID)
	if done.Status != Failed || done.ExitCode != 3 || done.Ended.IsZero() {
		t.Fatalf("%+v", done)
	}
	if out, errOut := streams(t, m, s.ID, false); out != "out\n" || errOut != "err\n" {
		t.Fatalf("stdout %q, stderr %q", out, errOut)
	}
	ok, _ := m.Run("true", nil, "admin")
	if d := waitDone(t, m, ok.ID); d.Status != Completed || d.ExitCode != 0 {
		t.Fatalf("%+v", d)
	}
	if l := m.List(); len(l) != 2 || l[0].ID != s.ID {
		t.Fatalf("list %+v", l)
	}
}

func TestUnknownCommandAndJob(t *testing.T) {
	m := NewManager(1024, time.Second)
	if _, err := m.Run("/nonexistent/binary", nil, "admin"); err == nil {
		t.Fatal("started a missing binary")
	}
	if _, err := m.Status("nope"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
	if err := m.Logs(context.Background(), "nope", false, nil); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}

func TestFollowStreamsUntilEnd(t *testing.T) {
	m := NewManager(1<<16, time.Second)
	s, _ := m.Run("sh", []string{"-c", "for i in 1 2 3; do echo line$i; sleep 0.05; done"}, "admin")
	got := logs(t, m, s.ID, true)
	if got != "line1\nline2\nline3\n" {
		t.Fatalf("followed %q", got)
	}
}

func TestOutputIsBounded(t *testing.T) {
	m := NewManager(1000, time.Second)
	s, _ := m.Run("sh", []string{"-c", "i=0; while [ $i -lt 500 ]; do echo 0123456789; i=$((i+1)); done"}, "admin")
	d := waitDone(t, m, s.ID)
	got := logs(t, m, s.ID, false)
	if len(got) != 1000 || !d.OutputTruncated {
		t.Fatalf("kept %d bytes, truncated=%v; want the last 1000", len(got), d.OutputTruncated)
	}
	if !strings.HasSuffix(got, "0123456789\n") {
		t.Fatalf("tail %q", got[len(got)-20:])
	}
	j, _ := m.get(s.ID)
	if c := cap(j.out.buf); c > 1000 {
		t.Fatalf("the buffer holds %d bytes of capacity for a cap of 1000", c)
	}
}

// The two streams stay apart: every chunk is from one stream. (They are two
// pipes, so the order between them is the order joblet read them in.)
func TestStreamsStayDistinguishable(t *testing.T) {
	m := NewManager(1<<16, time.Second)
	s, _ := m.Run("sh", []string{"-c", "echo out1; echo err1 >&2; echo out2; echo err2 >&2"}, "admin")
	waitDone(t, m, s.ID)
	if out, errOut := streams(t, m, s.ID, false); out != "out1\nout2\n" || errOut != "err1\nerr2\n" {
		t.Fatalf("stdout %q, stderr %q", out, errOut)
	}
	// Interleaved writes into the buffer keep their order and their stream.
	o := newOutput(100)
	o.writer(Stdout).Write([]byte("a"))
	o.writer(Stderr).Write([]byte("bb"))
	o.writer(Stdout).Write([]byte("c"))
	var got []string
	for off := int64(0); off < o.end(); {
		c, next, _, _ := o.readFrom(off, 10)
		got = append(got, fmt.Sprint(c.Stream, ":", string(c.Data)))
		off = next
	}
	if strings.Join(got, " ") != "1:a 2:bb 1:c" {
		t.Fatalf("chunks %q", got)
	}
}

// A reader from the start of a job whose output overflowed the cap learns
// how many bytes were dropped, on the first chunk only.
func TestDroppedOutputIsReported(t *testing.T) {
	m := NewManager(100, time.Second)
	s, _ := m.Run("sh", []string{"-c", "i=0; while [ $i -lt 30 ]; do echo 0123456789; echo e >&2; i=$((i+1)); done"}, "admin")
	waitDone(t, m, s.ID)
	var dropped int64
	var kept int
	first := true
	m.Logs(context.Background(), s.ID, false, func(c Chunk) error {
		if !first && c.Dropped != 0 {
			t.Errorf("a later chunk reports %d dropped", c.Dropped)
		}
		if c.Stream != Stdout && c.Stream != Stderr {
			t.Errorf("chunk without a stream: %+v", c)
		}
		first = false
		dropped += c.Dropped
		kept += len(c.Data)
		return nil
	})
	if kept != 100 || dropped != 30*13-100 {
		t.Fatalf("kept %d, dropped %d; want 100 and %d", kept, dropped, 30*13-100)
	}
	j, _ := m.get(s.ID)
	if n := len(j.out.segs); n > 101 {
		t.Fatalf("%d segments kept for 100 bytes", n)
	}
}

// Alternating one-byte writes between the streams cannot make the run
// bookkeeping outgrow the cap: the oldest runs go instead.
func TestAlternatingStreamsStayBounded(t *testing.T) {
	o := newOutput(1 << 14)
	for i := 0; i < 100000; i++ {
		o.writer(Stream(1 + i%2)).Write([]byte{byte('a' + i%2)})
	}
	if len(o.segs) > o.maxSegs() || len(o.buf) > 1<<14 || len(o.buf) == 0 || !o.truncated() {
		t.Fatalf("%d segments (max %d), %d bytes", len(o.segs), o.maxSegs(), len(o.buf))
	}
	var all []byte
	for off := int64(0); off < o.end(); {
		c, next, _, _ := o.readFrom(off, 1<<20)
		if len(c.Data) != 1 || c.Stream != Stream(1+(c.Data[0]-'a')) {
			t.Fatalf("chunk %+v at %d", c, off)
		}
		all = append(all, c.Data...)
		off = next
	}
	if len(all) != len(o.buf) || all[len(all)-1] != 'b' {
		t.Fatalf("read %d bytes of %d", len(all), len(o.buf))
	}
}

// Stop reaches the whole process group: a grandchild that ignores SIGTERM is
// killed after the grace period.
func TestStopKillsProcessGroup(t *testing.T) {
	m := NewManager(1<<16, 200*time.Millisecond)
	s, _ := m.Run("sh", []string{"-c", "trap '' TERM; sh -c 'trap \"\" TERM; echo $$; sleep 60' & wait"}, "admin")
	var pid int
	for i := 0; i < 200 && pid == 0; i++ {
		time.Sleep(10 * time.Millisecond)
		pid, _ = strconv.Atoi(strings.TrimSpace(logs(t, m, s.ID, false)))
	}
	if pid == 0 {
		t.Fatal("grandchild did not report its pid")
	}
	start := time.Now()
	st, err := m.Stop(context.Background(), s.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != Stopped {
		t.Fatalf("status %s", st.Status)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("stop took %v", time.Since(start))
	}
	// The grandchild is gone (reaped by init, or a zombie briefly).
	for i := 0; i < 100; i++ {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return
		}
		if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil && strings.Contains(string(b), ") Z") {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("grandchild %d survived Stop", pid)
}
