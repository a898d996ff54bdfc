package test

import "testing"

// Which of the package's tests run in parallel.
//
// Most of them spend their time waiting: on the processes they start, on
// refresh intervals, on retries' backoff, on moto. They share nothing: each
// has its own moto (motoFor), ports (harness.FreePort never hands out one
// twice), homes (t.TempDir), HAProxy and AWS proxies. Those call
// t.Parallel() first; scripts/test.sh runs the package with -parallel.
//
// The rest run first, one at a time, alone (no t.Parallel):
//   - timing-bound ones: the chaos run (its convergence bounds; its
//     sampler's package state, chaos_judge_test.go, is also
//     TestChaosSamplerLineageOneMoment's, which runs after it), the
//     connection and stream floods and the load test (latency,
//     failure-rate and memory bounds), the moves under a request rate
//     they must keep (>= 20/s: in parallel on a loaded machine
//     TestRotationWithoutDowntime fell to 10.6/s and
//     TestMoveToNodeCAUnderTraffic to 18.7/s), the node-issuing CA's
//     schedule (a 40 s lifetime), command deadlines, the server's
//     fail-fast on a taken port;
//   - the scripts (demo-*.sh, drop-ins), which use the repository's files;
//   - the short ones (under about 2 s), where waiting gains nothing.
//
// go test starts the parallel tests in the order of their files' names:
// the longest, the crash-at-each-write loops, are in crash_*_test.go so
// they start first instead of ending the run alone.
//
// heavy marks the CPU-bound ones (building packages, booting a container):
// parallel with the waiting ones, but never with each other. A heavy test
// waiting for its turn holds one of -parallel's slots: keep them few.

var heavySlot = make(chan struct{}, 1)

// heavy is t.Parallel for a CPU-bound test: it runs alongside the waiting
// tests but never alongside another heavy one.
func heavy(t *testing.T) {
	t.Parallel()
	heavySlot <- struct{}{}
	t.Cleanup(func() { <-heavySlot })
}
