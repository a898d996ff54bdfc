// Package logbatch batches log lines into few writes: a node writes an
// audit line per call, and at thousands of calls a second one write(2) per
// line costs more than the rest of the line's work. Lines are kept whole
// and in order, and reach the underlying writer within the delay given
// (or sooner, when a batch fills); a crash loses at most that delay's
// lines, never part of one.
package logbatch

import (
	"io"
	"sync"
	"time"
)

// maxBatch is the most kept before writing at once.
const maxBatch = 64 << 10

// Writer batches whole writes to w.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	delay  time.Duration
	buf    []byte
	timer  *time.Timer
	closed bool
}

// New batches writes to w, each written within delay.
func New(w io.Writer, delay time.Duration) *Writer {
	return &Writer{w: w, delay: delay}
}

// Write keeps p (one or more whole lines, as slog's handlers write them)
// for the next batch. It never fails: a failure of the underlying writer
// is the next Flush's.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	switch {
	case len(b.buf) >= maxBatch:
		b.flushLocked()
	case b.timer == nil:
		// A timer only while something waits: an idle node wakes for
		// nothing.
		b.timer = time.AfterFunc(b.delay, func() { b.Flush() })
	}
	return len(p), nil
}

// Flush writes what is kept.
func (b *Writer) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *Writer) flushLocked() error {
	if b.timer != nil {
		b.timer.Stop()
		b.timer = nil
	}
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	b.buf = b.buf[:0]
	if cap(b.buf) > 4*maxBatch {
		b.buf = nil
	}
	return err
}

// Close writes what is kept; later writes go straight through.
func (b *Writer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	return b.flushLocked()
}
