package server

import (
	"context"
	"log/slog"
	"runtime"
	"runtime/debug"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ehsaniara/joblet/internal/pki"
)

// streamLimit caps the streaming calls (log follows, health watches,
// reflection) each role holds on this node at once, over all its
// connections: a stream lives as long as its client wants and holds a
// goroutine and buffers all that time, so without a cap any certificate
// grows the node's memory without bound. Roles are counted apart, so a
// reader's flood never takes an admin's or a developer's streams. (Role
// certificates are shared: one holder of a role can use that role's share.)
type streamLimit struct {
	max  int
	held *prometheus.GaugeVec
	free *reclaimer

	mu sync.Mutex
	n  map[pki.Role]int
}

func newStreamLimit(max int, held *prometheus.GaugeVec, free *reclaimer) *streamLimit {
	return &streamLimit{max: max, held: held, free: free, n: map[pki.Role]int{}}
}

// stream runs after authorization (the role is in the context).
func (l *streamLimit) stream(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	role := RoleFrom(ss.Context())
	l.mu.Lock()
	if l.n[role] >= l.max {
		l.mu.Unlock()
		return status.Errorf(codes.ResourceExhausted, "role %q already holds %d streams on this node, its limit (security.maxStreamsPerRole): end some (log follows, health watches) before opening more", role, l.max)
	}
	l.n[role]++
	l.mu.Unlock()
	l.held.WithLabelValues(string(role)).Inc()
	l.free.add(1)
	defer func() {
		l.mu.Lock()
		l.n[role]--
		l.mu.Unlock()
		l.held.WithLabelValues(string(role)).Dec()
		l.free.add(-1)
	}()
	return h(srv, ss)
}

// reclaimAfter is the crowd (connections plus streams) whose departure
// makes the node hand memory back at once.
const reclaimAfter = 256

// reclaimer hands the memory a crowd of connections and streams used back
// to the system once most of the crowd has left. Left to itself the Go
// runtime does it only after its next GC, and an idle node runs one only
// every 2 minutes, then returns memory at the scavenger's pace: a node that
// held 20,000 streams stayed at 350 MB. It counts what is held and, when
// that falls to half of a peak of at least reclaimAfter, collects twice
// (sync.Pool caches outlive one collection) and returns the free memory
// (debug.FreeOSMemory), at most once per minGap. A steady load never
// triggers it.
type reclaimer struct {
	mu        sync.Mutex
	cur, peak int
	kick      chan struct{}
}

const (
	reclaimSettle = time.Second      // for the crowd's goroutines to end
	reclaimMinGap = 10 * time.Second // a crowd coming and going costs a GC per gap
)

func newReclaimer() *reclaimer { return &reclaimer{kick: make(chan struct{}, 1)} }

func (r *reclaimer) add(d int) {
	r.mu.Lock()
	r.cur += d
	r.peak = max(r.peak, r.cur)
	fire := d < 0 && r.peak >= reclaimAfter && r.cur <= r.peak/2
	if fire {
		r.peak = r.cur
	}
	r.mu.Unlock()
	if fire {
		select {
		case r.kick <- struct{}{}:
		default:
		}
	}
}

// run reclaims when kicked, until ctx ends.
func (r *reclaimer) run(ctx context.Context, log *slog.Logger) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.kick:
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(reclaimSettle):
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		runtime.GC()
		debug.FreeOSMemory()
		runtime.ReadMemStats(&after)
		log.Info("returned memory after a crowd of connections or streams left",
			"heapReleasedMiB", (after.HeapReleased-min(before.HeapReleased, after.HeapReleased))>>20, "heapInUseMiB", after.HeapInuse>>20)
		select {
		case <-ctx.Done():
			return
		case <-time.After(reclaimMinGap):
		}
	}
}
