package logbatch

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

type counted struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *counted) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func (c *counted) text() (string, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.String(), c.writes
}

// Many lines from many goroutines arrive whole, in the order each wrote
// them, within the delay, in a handful of writes; Close writes the rest.
func TestLinesArriveWholeAndBatched(t *testing.T) {
	var out counted
	w := New(&out, 20*time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				fmt.Fprintf(w, "msg=call g=%d i=%d pad=%s\n", g, i, strings.Repeat("x", 40))
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(2 * time.Second)
	for {
		text, _ := out.text()
		if strings.Count(text, "\n") == 4000 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	text, writes := out.text()
	lines := strings.Split(strings.TrimSuffix(text, "\n"), "\n")
	if len(lines) != 4000 {
		t.Fatalf("%d lines arrived, want 4000", len(lines))
	}
	next := map[int]int{}
	for _, l := range lines {
		var g, i int
		var pad string
		if n, err := fmt.Sscanf(l, "msg=call g=%d i=%d pad=%s", &g, &i, &pad); n != 3 || err != nil || len(pad) != 40 {
			t.Fatalf("a line arrived cut or mixed: %q", l)
		}
		if i != next[g] {
			t.Fatalf("goroutine %d: line %d arrived before line %d", g, i, next[g])
		}
		next[g]++
	}
	if writes > 100 {
		t.Errorf("%d writes for 4000 lines: not batched", writes)
	}
	fmt.Fprintln(w, "last")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if text, _ := out.text(); !strings.HasSuffix(text, "last\n") {
		t.Error("Close did not write what was kept")
	}
	fmt.Fprintln(w, "after")
	if text, _ := out.text(); !strings.HasSuffix(text, "after\n") {
		t.Error("a write after Close did not go straight through")
	}
}

// A lone line is written within the delay, with no further write to push
// it out.
func TestALoneLineArrives(t *testing.T) {
	var out counted
	w := New(&out, 10*time.Millisecond)
	fmt.Fprintln(w, "one")
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if text, _ := out.text(); text == "one\n" {
			return
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatal("a lone line never arrived")
}
