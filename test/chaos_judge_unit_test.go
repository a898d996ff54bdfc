package test

import (
	"strings"
	"testing"
	"time"
)

// The judge of the chaos run, on made-up records: what it excuses and what
// it counts as a violation.
func TestChaosJudge(t *testing.T) {
	t0 := time.Now().Add(-10 * time.Minute)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	newRun := func() *chaosRun {
		c := &chaosRun{started: t0, bound: 10 * time.Second, counts: map[string]int{}}
		for _, a := range []string{"a", "b", "c"} {
			c.nodes = append(c.nodes, &chaosNode{id: "node-" + a, addr: a, starts: []time.Time{t0}})
		}
		return c
	}
	valid := &chaosClient{name: "admin", class: "valid"}
	fail := func(cl *chaosClient, from, to float64) chaosCall {
		return chaosCall{client: cl, class: cl.class, start: at(from), end: at(to), errText: "boom"}
	}
	served := func(cl *chaosClient, addr string, from float64) chaosCall {
		return chaosCall{client: cl, class: cl.class, start: at(from), end: at(from + 1), ok: true, addr: addr}
	}
	judge := func(c *chaosRun, calls ...chaosCall) *chaosReport {
		c.calls = calls
		return c.judge()
	}

	t.Run("a failed valid call is a violation", func(t *testing.T) {
		rep := judge(newRun(), fail(valid, 10, 11))
		if len(rep.violations) != 1 || rep.violations[0].invariant != invValid {
			t.Fatalf("%+v", rep.violations)
		}
	})
	t.Run("unless every node was down at one moment", func(t *testing.T) {
		c := newRun()
		c.nodes[0].down = []chaosInterval{{from: at(5), to: at(12)}}
		c.nodes[1].down = []chaosInterval{{from: at(9), to: at(10.5)}}
		c.nodes[2].down = []chaosInterval{{from: at(10), to: at(11)}}
		if rep := judge(c, fail(valid, 10.2, 10.4)); len(rep.violations) != 0 {
			t.Fatalf("%+v", rep.violations)
		}
		// Two of three down is not all.
		c.nodes[2].down = []chaosInterval{{from: at(30), to: at(31)}}
		if rep := judge(c, fail(valid, 10.2, 10.4)); len(rep.violations) != 1 {
			t.Fatalf("two of three nodes down excused a failure: %+v", rep.violations)
		}
	})
	t.Run("a node back in the balancer only after a few checks", func(t *testing.T) {
		c := newRun()
		for _, n := range c.nodes {
			n.down = []chaosInterval{{from: at(5), to: at(6)}}
		}
		if rep := judge(c, fail(valid, 7, 8)); len(rep.violations) != 0 {
			t.Fatalf("%+v", rep.violations)
		}
		if rep := judge(c, fail(valid, 6+backInRotation.Seconds()+1, 12)); len(rep.violations) != 1 {
			t.Fatal("a failure long after the fleet was back was excused")
		}
	})
	t.Run("a client cut off until its refresh", func(t *testing.T) {
		cl := &chaosClient{name: "reader", class: "valid", stale: []chaosInterval{{from: at(20), to: at(25)}}}
		if rep := judge(newRun(), fail(cl, 24, 26)); len(rep.violations) != 0 {
			t.Fatalf("%+v", rep.violations)
		}
		if rep := judge(newRun(), fail(cl, 26, 27)); len(rep.violations) != 1 {
			t.Fatal("a failure after the refresh was excused")
		}
	})
	t.Run("failures in a connection flood: 1% allowed", func(t *testing.T) {
		c := newRun()
		c.floods = []chaosInterval{{from: at(0), to: at(300)}}
		var calls []chaosCall
		for i := 0; i < 199; i++ {
			calls = append(calls, chaosCall{client: valid, class: "valid", start: at(float64(i)), end: at(float64(i) + 0.5), ok: true})
		}
		if rep := judge(c, append(calls, fail(valid, 250, 251), fail(valid, 260, 261))...); len(rep.violations) != 0 {
			t.Fatalf("2 of 201: %+v", rep.violations)
		}
		// 1% of 203, rounded up, is 3.
		if rep := judge(c, append(calls, fail(valid, 250, 251), fail(valid, 260, 261), fail(valid, 270, 271), fail(valid, 280, 281))...); len(rep.violations) != 4 {
			t.Fatalf("4 of 203: %d violations", len(rep.violations))
		}
	})
	t.Run("a never-refreshed config: promised until finish", func(t *testing.T) {
		cl := &chaosClient{name: "never-refreshed", class: "never refreshed", validUntil: at(50)}
		if rep := judge(newRun(), fail(cl, 49, 51)); len(rep.violations) != 0 {
			t.Fatalf("%+v", rep.violations)
		}
		if rep := judge(newRun(), fail(cl, 40, 41)); len(rep.violations) != 1 {
			t.Fatal("a failure before finish was excused")
		}
	})
	t.Run("a revoked config served after the bound", func(t *testing.T) {
		cl := &chaosClient{name: "revoked-reader", class: "revoked", since: at(100), serial: "ab"}
		if rep := judge(newRun(), served(cl, "a", 99), served(cl, "a", 109)); len(rep.violations) != 0 {
			t.Fatalf("within the bound: %+v", rep.violations)
		}
		rep := judge(newRun(), served(cl, "b", 111))
		if len(rep.violations) != 1 || rep.violations[0].invariant != invRevoked || !strings.Contains(rep.violations[0].detail, "node-b") {
			t.Fatalf("%+v", rep.violations)
		}
		// A store fault, or the node's restart, pushes its deadline.
		c := newRun()
		c.store = []chaosInterval{{from: at(105), to: at(108), what: "unreachable"}}
		if rep := judge(c, served(cl, "a", 117)); len(rep.violations) != 0 {
			t.Fatalf("a store fault did not push the deadline: %+v", rep.violations)
		}
		if rep := judge(c, served(cl, "a", 119)); len(rep.violations) != 1 {
			t.Fatal("served a bound after the store fault ended, not counted")
		}
		c = newRun()
		c.nodes[2].starts = append(c.nodes[2].starts, at(104))
		if rep := judge(c, served(cl, "c", 113), served(cl, "a", 113)); len(rep.violations) != 1 || !strings.Contains(rep.violations[0].detail, "node-a") {
			t.Fatalf("a restart pushes only its own node's deadline: %+v", rep.violations)
		}
	})
	t.Run("a retired config", func(t *testing.T) {
		cl := &chaosClient{name: "never-refreshed", class: "retired", since: at(100)}
		rep := judge(newRun(), served(cl, "a", 120))
		if len(rep.violations) != 1 || rep.violations[0].invariant != invRetired {
			t.Fatalf("%+v", rep.violations)
		}
	})
}
