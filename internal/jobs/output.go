package jobs

import "sync"

// Stream is the job's stream a piece of output came from.
type Stream uint8

// The job's two output streams.
const (
	Stdout Stream = 1
	Stderr Stream = 2
)

// segment marks where a run of bytes from one stream begins.
type segment struct {
	start  int64
	stream Stream
}

// output keeps the last max bytes a job wrote, on both streams in the order
// written, and lets readers follow it. Offsets count every byte ever
// written, so a follower that falls behind the window skips what was dropped
// (and learns how much) instead of reading garbage. segs records where each
// run of one stream begins; it holds one entry per switch between streams
// inside the window, and at most maxSegs: a job that switches streams more
// often than that keeps fewer bytes.
type output struct {
	mu      sync.Mutex
	max     int
	buf     []byte // the last len(buf) bytes, ending at offset written
	segs    []segment
	written int64
	closed  bool
	wake    chan struct{} // closed and replaced on every write and on close
}

func newOutput(max int) *output {
	return &output{max: max, wake: make(chan struct{})}
}

// streamWriter writes into o as one stream.
type streamWriter struct {
	o      *output
	stream Stream
}

func (w streamWriter) Write(p []byte) (int, error) { return w.o.write(w.stream, p) }

func (o *output) writer(s Stream) streamWriter { return streamWriter{o, s} }

func (o *output) write(s Stream, p []byte) (int, error) {
	n := len(p)
	if n == 0 {
		return 0, nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.segs) == 0 || o.segs[len(o.segs)-1].stream != s {
		o.segs = append(o.segs, segment{start: o.written, stream: s})
	}
	o.written += int64(n)
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
	// Forget the segments that ended before the oldest byte kept.
	start := o.written - int64(len(o.buf))
	drop := 0
	for drop+1 < len(o.segs) && o.segs[drop+1].start <= start {
		drop++
	}
	// A job alternating tiny writes between its streams would need a
	// segment per byte: past maxSegs, drop the oldest runs (a quarter of
	// them at once, so the copy is amortised), so the bookkeeping stays
	// within a sixteenth of the cap.
	if maxSegs := o.maxSegs(); len(o.segs)-drop > maxSegs {
		drop = len(o.segs) - maxSegs*3/4
		cut := o.segs[drop].start - start
		o.buf = append(o.buf[:0], o.buf[cut:]...)
	}
	if drop > 0 {
		o.segs = append(o.segs[:0], o.segs[drop:]...)
	}
	close(o.wake)
	o.wake = make(chan struct{})
	return n, nil
}

// maxSegs bounds the segments kept: 16 bytes each, a sixteenth of the cap.
func (o *output) maxSegs() int { return max(16, o.max/256) }

func (o *output) close() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if !o.closed {
		o.closed = true
		close(o.wake)
	}
}

// Chunk is a run of output from one stream. Dropped counts the bytes the
// buffer dropped between the reader's offset and this chunk.
type Chunk struct {
	Data    []byte
	Stream  Stream
	Dropped int64
}

// readFrom returns at most limit bytes from offset off on (or from the
// oldest kept), all from one stream, the offset to read from next, whether
// the output is complete and was all returned, and a channel closed when
// there is more.
func (o *output) readFrom(off int64, limit int) (c Chunk, next int64, done bool, more <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	start := o.written - int64(len(o.buf))
	if off < start {
		c.Dropped = start - off
		off = start
	}
	end := min(o.written, off+int64(limit))
	for i := len(o.segs) - 1; i >= 0; i-- {
		if o.segs[i].start <= off {
			c.Stream = o.segs[i].stream
			if i+1 < len(o.segs) {
				end = min(end, o.segs[i+1].start)
			}
			break
		}
	}
	c.Data = append([]byte(nil), o.buf[off-start:end-start]...)
	return c, end, o.closed && end == o.written, o.wake
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
