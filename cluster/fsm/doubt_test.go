package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"pgregory.net/rapid"

	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The cluster freezes itself on a submitted plan exactly when the policy
// sets max_plan_change below 1, at least MinEndpointsForDoubt endpoints
// are served, the plan is not forced, and the share of endpoints it
// changes (new ones included, among all served or planned) is above the
// limit. The share is computed here from the test's own choices.
func TestFreezeOnDoubtExactly(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		limit := rapid.SampledFrom([]float64{0, 0.3, 0.5, 1}).Draw(rt, "limit") // 0: unset
		if limit > 0 {
			h.s.config.MaxPlanChange = proto.Float64(limit)
		}
		served := rapid.IntRange(0, 16).Draw(rt, "served")
		name := func(i int) string { return fmt.Sprintf("e%d.dnsplan.test.", i) }
		ep := func(i int, w uint32) *pb.EndpointPlan { return endpoint(name(i), target("a", "192.0.2.1", w)) }
		if served > 0 {
			p := &pb.Plan{PlannerId: "p"}
			for i := range served {
				p.Endpoints = append(p.Endpoints, ep(i, 1))
			}
			l := h.mustAcquire("enactor/0", "az-a", time.Hour)
			r := h.submit(p, true) // the doubt rule has not met these endpoints yet
			h.mustApply(r.Generation, l.Name, l.Token, "az-a")
		}
		plan := &pb.Plan{PlannerId: "p"}
		changed, newOnes := 0, 0
		for i := range served + 3 {
			switch what := rapid.IntRange(0, 2).Draw(rt, "endpoint"); {
			case what == 0: // not in the plan
			case i >= served: // a new endpoint
				plan.Endpoints = append(plan.Endpoints, ep(i, 1))
				changed++
				newOnes++
			case what == 1:
				plan.Endpoints = append(plan.Endpoints, ep(i, 1))
			default:
				plan.Endpoints = append(plan.Endpoints, ep(i, 2))
				changed++
			}
		}
		if len(plan.Endpoints) == 0 {
			return
		}
		force := rapid.Bool().Draw(rt, "force")
		all := served + newOnes
		want := limit > 0 && limit < 1 && served >= MinEndpointsForDoubt && !force && float64(changed)/float64(all) > limit
		before := h.s.NextGeneration()
		r := h.submit(plan, force)
		if r.Err != nil {
			rt.Fatalf("submission refused: %v", r.Err)
		}
		frozen, why := h.s.Frozen()
		if frozen != want || (r.Doubt != "") != want {
			rt.Fatalf("DOUBT: %d of %d endpoints changed (limit %v, served %d, force %v): frozen %v (%q), want %v",
				changed, all, limit, served, force, frozen, why, want)
		}
		if h.s.NextGeneration() != before+1 {
			rt.Fatal("DOUBT: the plan was not stored")
		}
		if want && !strings.HasPrefix(why, "doubt:") {
			rt.Fatalf("DOUBT: freeze reason %q", why)
		}
		if held := h.s.Plan(r.Generation).GetHeld(); held != want {
			rt.Fatalf("DOUBT: plan held %v, want %v", held, want)
		}
		if want {
			// Held for good: not even after the freeze is lifted.
			h.freeze(false, "")
			l := h.mustAcquire("enactor/9", "az-z", time.Hour)
			if r := h.apply(r.Generation, l.Name, l.Token, "az-z"); !errors.Is(r.Err, ErrHeld) {
				rt.Fatalf("DOUBT: apply of the held plan after unfreezing: %v, want HELD", r.Err)
			}
		}
	})
}

// At the limit is not past it: with ten endpoints and max_plan_change
// 0.3, a plan changing three is stored as usual, one changing four
// freezes the cluster.
func TestFreezeOnDoubtBoundary(t *testing.T) {
	for changed, want := range map[int]bool{3: false, 4: true} {
		h := newHarness(t)
		h.s.config.MaxPlanChange = proto.Float64(0.3)
		p := &pb.Plan{PlannerId: "p"}
		for i := range 10 {
			p.Endpoints = append(p.Endpoints, endpoint(fmt.Sprintf("e%d.dnsplan.test.", i), target("a", "192.0.2.1", 1)))
		}
		l := h.mustAcquire("enactor/0", "az-a", time.Hour)
		h.mustApply(h.mustSubmit(p), l.Name, l.Token, "az-a")
		next := proto.Clone(p).(*pb.Plan)
		for i := range changed {
			next.Endpoints[i].Targets[0].Weight = 2
		}
		if r := h.submit(next, false); r.Err != nil || (r.Doubt != "") != want {
			t.Errorf("%d of 10 changed: %v, doubt %q, want doubt %v", changed, r.Err, r.Doubt, want)
		}
		if frozen, _ := h.s.Frozen(); frozen != want {
			t.Errorf("%d of 10 changed: frozen %v, want %v", changed, frozen, want)
		}
	}
}

// The velocity limit refusing max_velocity_refusals different changes of
// one endpoint within the window freezes the cluster; the same change
// asked again (a planner retrying) counts once, refusals older than the
// window do not count, and after a freeze the count starts over.
func TestFreezeOnRepeatedVelocityRefusals(t *testing.T) {
	h := newHarness(t)
	servingForVelocity(h, 3)
	refuse := func(what string, keep uint32, wantFrozen bool) {
		t.Helper()
		r := h.submit(drain(keep), false)
		if !errors.Is(r.Err, ErrVelocity) {
			t.Fatalf("%s: %v, want VELOCITY", what, r.Err)
		}
		if frozen, why := h.s.Frozen(); frozen != wantFrozen || (r.Doubt != "") != wantFrozen {
			t.Fatalf("%s: frozen %v (%q), doubt %q; want frozen %v", what, frozen, why, r.Doubt, wantFrozen)
		}
		h.advance(10 * time.Second)
	}
	refuse("a first change", 40, false)
	for range 5 {
		refuse("the same change, retried", 40, false)
	}
	refuse("a second change", 30, false)
	h.advance(2 * time.Minute) // both older than the window now
	refuse("a third, the others expired", 20, false)
	refuse("a fourth", 10, false)
	refuse("a fifth: three within the window", 5, true)
	if _, why := h.s.Frozen(); !strings.Contains(why, "refused 3 different changes of endpoint \"api.dnsplan.test.\"") {
		t.Errorf("freeze reason %q", why)
	}
	h.freeze(false, "")
	refuse("after the unfreeze, the count starts over", 4, false)
	b, err := h.s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil || len(r.velocityRefusals[api]) != 1 {
		t.Fatalf("restored refusals %v (%v), want the one within the window", r.velocityRefusals, err)
	}
	if err := Validate(&pb.SetConfigRequest{MaxVelocityRefusals: proto.Uint32(MaxVelocityRefusalsLimit + 1)}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a setting above the limit: %v", err)
	}
}

// Refusals at apply count as at submit.
func TestVelocityRefusalsAtApplyCount(t *testing.T) {
	h := newHarness(t)
	l := servingForVelocity(h, 2)
	// Two changes allowed now (at most 30% less), then a stricter limit
	// before they are applied.
	g1 := h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.1", 100), target("b", "192.0.2.2", 40))))
	g2 := h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.1", 100), target("b", "192.0.2.2", 50))))
	h.setPolicy(0.1, time.Minute)
	for i, g := range []uint64{g1, g2} {
		wantFrozen := i == 1
		r := h.apply(g, l.Name, l.Token, "az-a")
		if r.Err != nil || r.Endpoints[0].Outcome != pb.Outcome_OUTCOME_REFUSED || (r.Doubt != "") != wantFrozen {
			t.Fatalf("apply of %d: %v, %v, doubt %q; want refused, frozen %v", g, r.Err, r.Endpoints, r.Doubt, wantFrozen)
		}
	}
	if frozen, _ := h.s.Frozen(); !frozen {
		t.Fatal("two changes refused at apply did not freeze the cluster")
	}
}

// Replicas count the same refusals whether they restarted from a snapshot
// or not, even when the window grows afterwards.
func TestVelocityRefusalsSameAfterRestore(t *testing.T) {
	h := newHarness(t)
	servingForVelocity(h, 3)
	h.submit(drain(40), false)
	h.advance(2 * time.Minute)
	h.freeze(false, "") // any command: the state's time moves on
	b, err := h.s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	other := &harness{tb: t, s: restored, index: h.index, stamp: h.stamp}
	for _, r := range []*harness{h, other} {
		r.setPolicy(0.5, time.Hour) // the refusal two minutes ago is inside the new window
		r.submit(drain(30), false)
		r.submit(drain(20), false)
	}
	a, _ := h.s.Frozen()
	c, _ := other.s.Frozen()
	if a != c || a {
		t.Fatalf("replica that kept its state frozen %v, restored replica frozen %v; want both not (the first refusal left the window before it grew)", a, c)
	}
}

// A plan the request says is held is not: only the cluster holds plans.
// And refusals while frozen are not counted.
func TestHeldOnlyByTheCluster(t *testing.T) {
	h := newHarness(t)
	p := validPlan()
	p.Held = true
	if g := h.mustSubmit(p); h.s.Plan(g).GetHeld() {
		t.Fatal("a client's held flag was stored")
	}
	servingForVelocity(h, 2)
	h.freeze(true, "operator")
	for keep := range uint32(3) {
		h.submit(drain(keep+1), false)
	}
	h.freeze(false, "")
	if r := h.submit(drain(9), false); r.Doubt != "" {
		t.Fatalf("the first refusal after an unfreeze froze again: %s", r.Doubt)
	}
}

// A preview says when submitting a plan would freeze the cluster on
// repeated velocity refusals, and changes nothing.
func TestDoubtPlanPreviewsVelocityRefusals(t *testing.T) {
	h := newHarness(t)
	servingForVelocity(h, 3)
	h.submit(drain(40), false)
	h.submit(drain(30), false)
	if why := h.s.DoubtPlan(drain(30)); why != "" {
		t.Errorf("the same change again would not freeze, yet the preview says %q", why)
	}
	before := marshal(t, h.s)
	if why := h.s.DoubtPlan(drain(20)); !strings.Contains(why, "refused 3 different changes") {
		t.Errorf("a third different change: preview %q", why)
	}
	if !bytes.Equal(before, marshal(t, h.s)) {
		t.Error("the preview changed the state")
	}
	if r := h.submit(drain(20), false); r.Doubt == "" {
		t.Error("the submission the preview said would freeze did not")
	}
}

// servingForVelocity readies h for the velocity-refusal doubt: a limit of
// half the capacity within a minute, refusals counted up to limit, and
// api serving two addresses of weight 100 under the returned lease.
func servingForVelocity(h *harness, limit uint32) *pb.Lease {
	h.tb.Helper()
	h.setPolicy(0.5, time.Minute)
	h.s.config.MaxVelocityRefusals = proto.Uint32(limit)
	l := h.mustAcquire("enactor/0", "az-a", time.Hour)
	h.mustApply(h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.1", 100), target("b", "192.0.2.2", 100)))), l.Name, l.Token, "az-a")
	return l
}

// drain keeps only keep of api's first address and none of its second:
// far past a 50% limit for any keep below 100.
func drain(keep uint32) *pb.Plan {
	return plan(endpoint(api, target("a", "192.0.2.1", keep), target("b", "192.0.2.2", 0)))
}

// An enactor's report of read-back failures freezes the cluster exactly
// when it comes from the lease's current holder, the policy sets
// max_read_back_failures below 1, and the distinct members it names that
// the state knows are more than that share of the members. Names it does
// not know, and names given twice, do not count. The share is computed
// here from the test's own choices.
func TestReadBackDoubtExactly(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		h := newHarness(t)
		limit := rapid.SampledFrom([]float64{0, 0.5, 0.75, 1}).Draw(rt, "limit") // 0: unset
		if limit > 0 {
			h.s.config.MaxReadBackFailures = proto.Float64(limit)
		}
		members := rapid.IntRange(1, 7).Draw(rt, "members")
		for i := range members {
			h.do(&statev1.SetMember{Id: fmt.Sprintf("n%d", i), RaftAddr: "r", GrpcAddr: "g"})
		}
		l := h.mustAcquire("enactor/0", "az-a", time.Hour)
		token := l.Token
		stale := rapid.Bool().Draw(rt, "stale")
		if stale {
			token++
		}
		var nodes []string
		failed := map[string]bool{}
		for range rapid.IntRange(1, 10).Draw(rt, "reported") {
			i := rapid.IntRange(0, 9).Draw(rt, "node") // n7..n9 are no members
			nodes = append(nodes, fmt.Sprintf("n%d", i))
			if i < members {
				failed[nodes[len(nodes)-1]] = true
			}
		}
		r := h.do(&pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_READ_BACK, Generation: 1,
			LeaseName: l.Name, LeaseToken: token, EnactorId: "az-a", Nodes: nodes, Detail: "lagging"})
		want := !stale && limit > 0 && limit < 1 && float64(len(failed))/float64(members) > limit
		frozen, why := h.s.Frozen()
		if frozen != want || (r.Doubt != "") != want || r.Frozen != want {
			rt.Fatalf("READ-BACK DOUBT: %d of %d members failed (named %v, limit %v, stale %v): frozen %v (%q), want %v",
				len(failed), members, nodes, limit, stale, frozen, why, want)
		}
		if stale != errors.Is(r.Err, ErrFenced) {
			rt.Fatalf("READ-BACK DOUBT: stale %v, err %v", stale, r.Err)
		}
		if want && !strings.HasPrefix(why, "doubt:") {
			rt.Fatalf("READ-BACK DOUBT: freeze reason %q", why)
		}
	})
}

// A report of a stopped rollout freezes the cluster; from a superseded
// token it changes nothing; before its log version is active it is
// refused on every replica alike; and a report while frozen keeps the
// first reason and is kept in the history.
func TestRolloutDoubt(t *testing.T) {
	report := func(h *harness, l *pb.Lease, token uint64) Result {
		return h.do(&pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_ROLLOUT, Generation: 3,
			LeaseName: l.Name, LeaseToken: token, EnactorId: "az-a", Endpoints: []string{"api.dnsplan.test."},
			Detail: "generation 4 marks targets wave 1 brought in unhealthy"})
	}
	h := newHarness(t)
	l := h.mustAcquire("enactor/0", "az-a", time.Hour)
	if r := report(h, l, l.Token+1); !errors.Is(r.Err, ErrFenced) {
		t.Fatalf("superseded token: %v, want fenced", r.Err)
	}
	if frozen, _ := h.s.Frozen(); frozen {
		t.Fatal("a fenced report froze the cluster")
	}

	old := newHarness(t)
	old.s.logVersion = LogVelocityDoubt
	lo := old.mustAcquire("enactor/0", "az-a", time.Hour)
	if r := report(old, lo, lo.Token); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("log version %d: %v, want refused invalid", LogVelocityDoubt, r.Err)
	}
	if frozen, _ := old.s.Frozen(); frozen {
		t.Fatal("a report before its log version froze the cluster")
	}

	r := report(h, l, l.Token)
	frozen, why := h.s.Frozen()
	if r.Err != nil || !frozen || r.Doubt == "" || !strings.Contains(why, `enactor "az-a" stopped the staged rollout of generation 3`) {
		t.Fatalf("rollout report: err %v, frozen %v (%q)", r.Err, frozen, why)
	}
	last := h.s.Events(HistoryQuery{})
	if ev := last[len(last)-1]; ev.GetKindCode() != kindDoubt || ev.GetOutcomeCode() != outcomeFrozen || ev.GetActor() != "az-a" {
		t.Fatalf("history: %v", ev)
	}
	events := len(h.s.Events(HistoryQuery{}))
	if r := report(h, l, l.Token); r.Err != nil || !r.Frozen || r.Doubt != "" {
		t.Fatalf("report while frozen: %+v", r)
	}
	if _, again := h.s.Frozen(); again != why {
		t.Fatalf("a second report replaced the freeze reason: %q", again)
	}
	if n := len(h.s.Events(HistoryQuery{})); n != events+1 {
		t.Fatalf("history: %d events after a second report, want %d", n, events+1)
	}
}
