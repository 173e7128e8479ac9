package fsm

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"pgregory.net/rapid"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func servedAddrs(a *pb.AppliedEndpoint) []string {
	var out []string
	for _, t := range a.GetTargets() {
		if t.GetWeight() > 0 {
			out = append(out, fmt.Sprintf("%s/%d", t.GetAddress(), t.GetWeight()))
		}
	}
	return out
}

// A rollback stores a new plan of the records served before, even after
// clean-up deleted the plans they came from; applied like any plan, it
// serves them again.
func TestRollback(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor/0", "az-a", time.Hour)
	unapplied := h.mustSubmit(validPlan())
	var gens []uint64
	for _, w := range []uint32{1, 2, 3} {
		g := h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.1", w), target("b", "192.0.2.2", 1))))
		h.mustApply(g, l.Name, l.Token, "az-a")
		gens = append(gens, g)
	}
	if r := h.cleanup(1); r.Err != nil {
		t.Fatal(r.Err)
	}
	if h.s.Plan(gens[0]) != nil || h.s.Plan(gens[1]) != nil {
		t.Fatal("clean-up kept the old plans; the test needs them gone")
	}
	h.caller = "operator/ops"
	r := h.do(&pb.RollbackPlanRequest{Reason: "bad weights"})
	if r.Err != nil || len(r.Kept) != 0 {
		t.Fatalf("rollback: %v, kept %v", r.Err, r.Kept)
	}
	p := h.s.Plan(r.Generation)
	if p.GetPlannerId() != RollbackPlanner || r.Generation != gens[2]+1 {
		t.Fatalf("rollback stored %v", p)
	}
	h.mustApply(r.Generation, l.Name, l.Token, "az-a")
	if got := servedAddrs(h.s.Applied(api)); !slicesEqual(got, []string{"192.0.2.1/2", "192.0.2.2/1"}) {
		t.Errorf("after the rollback the endpoint serves %v, want generation %d's records", got, gens[1])
	}
	ev := h.s.History(0)
	var rb *pb.HistoryEvent
	for _, e := range ev {
		if e.KindCode == kindRollback {
			rb = e
		}
	}
	if rb == nil || rb.Caller != "operator/ops" || rb.Reason != "bad weights" || rb.Generation != r.Generation {
		t.Errorf("rollback event %v", rb)
	}
	// To a generation: the records of the newest generation not after it.
	r = h.do(&pb.RollbackPlanRequest{ToGeneration: gens[0]})
	if r.Err != nil {
		t.Fatal(r.Err)
	}
	if got := h.s.Plan(r.Generation).Endpoints[0].Targets[0].Weight; got != 1 {
		t.Errorf("rollback to %d: weight %d, want 1", gens[0], got)
	}
	// Before anything was applied: nothing to roll back to.
	if r := h.do(&pb.RollbackPlanRequest{ToGeneration: unapplied}); !errors.Is(r.Err, ErrNotFound) {
		t.Errorf("rollback to before the first apply: %v, want NOT_FOUND", r.Err)
	}
	// The records kept per endpoint are bounded.
	for range 2 * RollbackDepth {
		g := h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.1", 1), target("b", "192.0.2.2", 1))))
		h.mustApply(g, l.Name, l.Token, "az-a")
	}
	if n := len(h.s.Previous(api)); n != RollbackDepth {
		t.Errorf("%d earlier records kept, want %d", n, RollbackDepth)
	}
}

func slicesEqual(a, b []string) bool { return fmt.Sprint(a) == fmt.Sprint(b) }

// A rollback that is not forced never stops an endpoint serving an address
// family it serves (I2 per family), whatever records were kept: random
// plans, applies (some forced) and clean-ups, then rollbacks.
func TestRollbackNeverEmptiesAFamily(t *testing.T) {
	addrs := []string{"192.0.2.1", "192.0.2.2", "2001:db8::1", "2001:db8::2"}
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		l := h.mustAcquire("enactor/0", "az-a", time.Hour)
		for range rapid.IntRange(1, 30).Draw(rt, "steps") {
			switch rapid.IntRange(0, 3).Draw(rt, "op") {
			case 0, 1:
				var ts []*pb.Target
				for i, a := range addrs {
					w := rapid.IntRange(0, 3).Draw(rt, "weight")
					if i == 0 {
						w++ // every plan serves something
					}
					if w > 0 {
						ts = append(ts, target(fmt.Sprintf("t%d", i), a, uint32(w)))
					}
				}
				r := h.submit(plan(endpoint(api, ts...)), rapid.Bool().Draw(rt, "force"))
				if r.Err == nil {
					h.apply(r.Generation, l.Name, l.Token, "az-a")
				}
			case 2:
				h.cleanup(1)
			case 3:
				before := servedFamilies4and6(h.s.Applied(api))
				r := h.do(&pb.RollbackPlanRequest{ToGeneration: uint64(rapid.IntRange(0, 8).Draw(rt, "to"))})
				if r.Err != nil {
					continue
				}
				for _, ep := range h.s.Plan(r.Generation).Endpoints {
					after := servedFamilies4and6(&pb.AppliedEndpoint{Targets: ep.Targets})
					if (before[0] && !after[0]) || (before[1] && !after[1]) {
						rt.Fatalf("I2: rollback plan %d serves families %v of %s, which serves %v", r.Generation, after, ep.Name, before)
					}
				}
			}
		}
	})
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// servedFamilies4and6 says whether a serves an IPv4 and an IPv6 address
// (weight > 0), computed here, not by the rule under test.
func servedFamilies4and6(a *pb.AppliedEndpoint) [2]bool {
	var out [2]bool
	for _, t := range a.GetTargets() {
		if t.GetWeight() == 0 {
			continue
		}
		if ip, err := netip.ParseAddr(t.GetAddress()); err == nil {
			out[boolInt(ip.Is6())] = true
		}
	}
	return out
}
