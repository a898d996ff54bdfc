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
		p = p[len(p)-o.max:]
		o.buf = o.buf[:0]
	} else if over := len(o.buf) + len(p) - o.max; over > 0 {
		o.buf = append(o.buf[:0], o.buf[over:]...)
	}
	if need := len(o.buf) + len(p); need > cap(o.buf) {
		// Grow as append would, but never past the cap: append's doubling
		// could hold twice the memory the cap promises.
		grown := make([]byte, len(o.buf), min(o.max, max(2*cap(o.buf), need)))
		copy(grown, o.buf)
		o.buf = grown
	}
	o.buf = append(o.buf, p...)
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

// readFrom returns at most limit bytes from offset off on (or from the
// oldest kept), the offset to read from next, whether the output is complete
// and was all returned, and a channel closed when there is more.
func (o *output) readFrom(off int64, limit int) (data []byte, next int64, done bool, more <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	start := o.written - int64(len(o.buf))
	if off < start {
		off = start
	}
	end := min(o.written, off+int64(limit))
	data = append([]byte(nil), o.buf[off-start:end-start]...)
	return data, end, o.closed && end == o.written, o.wake
}

// end is the offset after the last byte written.
func (o *output) end() int64 {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.written
}

// truncated reports whether bytes were dropped from the front.
func (o *output) truncated() bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.written > int64(len(o.buf))
}
