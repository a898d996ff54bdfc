package server

import "testing"

// The reclaimer is kicked once a crowd of at least reclaimAfter falls to
// half, and not by a steady load or a smaller crowd.
func TestReclaimerKicksWhenACrowdLeaves(t *testing.T) {
	kicked := func(r *reclaimer) bool {
		select {
		case <-r.kick:
			return true
		default:
			return false
		}
	}
	r := newReclaimer()
	for range 100 { // a small crowd comes and goes
		r.add(1)
	}
	for range 100 {
		r.add(-1)
	}
	if kicked(r) {
		t.Fatal("kicked by a crowd smaller than reclaimAfter")
	}
	for range reclaimAfter + 10 {
		r.add(1)
	}
	for range 100 { // a steady load: some leave, others come
		r.add(-1)
		r.add(1)
	}
	if kicked(r) {
		t.Fatal("kicked by a steady load")
	}
	for range (reclaimAfter + 10) / 2 {
		r.add(-1)
	}
	if !kicked(r) {
		t.Fatal("not kicked when a crowd of reclaimAfter fell to half")
	}
}
