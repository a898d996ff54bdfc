package jobs

import "sync"

// output keeps the last max bytes a job wrote and lets readers follow it.
// Offsets count every byte ever written, so a follower that falls behind
// the window skips what was dropped instead of reading garbage.
type output struct {
	mu      sync.Mutex
	max     int
	buf     []byte // the last len(buf) bytes, ending at offset written
	written int64
	closed  bool
	wake    chan struct{} // closed and replaced on every write and on close
}

func newOutput(max int) *output {
	return &output{max: max, wake: make(chan struct{})}
}

func (o *output) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.written += int64(len(p))
	if len(p) >= o.max {
		o.buf = append(o.buf[:0], p[len(p)-o.max:]...)
	} else {
		if over := len(o.buf) + len(p) - o.max; over > 0 {
			o.buf = append(o.buf[:0], o.buf[over:]...)
		}
		o.buf = append(o.buf, p...)
	}
	close(o.wake)
	o.wake = make(chan struct{})
	return len(p), nil
}

func (o *output) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.wake)
	}
}

// readFrom returns the bytes from offset off on (or from the oldest kept),
// the offset to read from next, whether the output is complete, and a
// channel closed when there is more.
func (o *output) readFrom(off int64) (data []byte, next int64, done bool, more <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	start := o.written - int64(len(o.buf))
	if off < start {
		off = start
	}
	data = append([]byte(nil), o.buf[off-start:]...)
	return data, o.written, o.closed, o.wake
}

// truncated reports whether bytes were dropped from the front.
func (o *output) truncated() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.written > int64(len(o.buf))
}
