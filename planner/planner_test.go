package planner_test

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// target is one line of an inventory written by a test.
type target struct {
	id, address string
	capacity    int
	check       string
}

func inventoryYAML(ttl int, targets ...target) string {
	var b strings.Builder
	fmt.Fprintf(&b, "zone: dnsplan.test.\nendpoints:\n  - name: %s\n    ttl: %d\n    targets:\n", endpoint, ttl)
	for _, t := range targets {
		fmt.Fprintf(&b, "      - id: %s\n        address: %s\n        capacity: %d\n", t.id, t.address, t.capacity)
		if t.check != "" {
			fmt.Fprintf(&b, "        check: %s\n", t.check)
		}
	}
	// A second endpoint with no checks: always at full weight.
	b.WriteString("  - name: static.dnsplan.test.\n    ttl: 300\n    targets:\n      - {id: static, address: \"2001:db8::5\", capacity: 7}\n")
	return b.String()
}

// One planner on a one-node cluster: the first plan carries every
// capacity; a failed backend gets weight 0 after fall probes and its
// capacity back after rise probes, one new generation per change and none
// while health stands still; when every target fails the endpoint fails
// open, with the metric set.
func TestPlannerFollowsHealth(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 1})
	cl := tc.Client()
	a, checkA := startBackend(t, "a")
	b, checkB := startBackend(t, "b")
	c, checkC := startBackend(t, "c")
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	writeFile(t, inv, inventoryYAML(30,
		target{"lb-a", "192.0.2.1", 100, checkA},
		target{"lb-b", "192.0.2.2", 100, checkB},
		target{"lb-c", "192.0.2.3", 50, checkC},
	))
	p := startPlanner(t, tc, "p1", inv)

	first := waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 100, "lb-c": 50})
	if first.GetPlannerId() != "p1" {
		t.Errorf("planner_id %q", first.GetPlannerId())
	}
	if w := weightsOf(first, "static.dnsplan.test."); !equal(w, map[string]uint32{"static": 7}) {
		t.Errorf("static endpoint %v", w)
	}
	g1 := first.GetGeneration()
	if p.metric(t, "dnsplan_planner_lease_held") != 1 {
		t.Error("lease_held gauge is not 1")
	}

	// Health stands still: several rounds, nothing new.
	p.settle(t, 5)
	if g := newest(t, cl).GetGeneration(); g != g1 {
		t.Fatalf("unchanged health stored generation %d after %d", g, g1)
	}
	if n := p.metric(t, "dnsplan_planner_plans_submitted_total"); n != 1 {
		t.Errorf("submitted %v plans, want 1", n)
	}

	b.Fail()
	down := waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 0, "lb-c": 50})
	if down.GetGeneration() != g1+1 {
		t.Errorf("lb-b down is generation %d, want %d", down.GetGeneration(), g1+1)
	}
	if p.p.Health()["lb-b"] {
		t.Error("Health still says lb-b is healthy")
	}
	// Stored as a delta: the log carried the one endpoint that changed.
	h, err := cl.ListHistory(clustertest.Ctx(t), &pb.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var reason string
	for _, ev := range h.GetEvents() {
		if ev.GetKind() == "submit" && ev.GetGeneration() == down.GetGeneration() {
			reason = ev.GetReason()
		}
	}
	if want := fmt.Sprintf("delta on generation %d: 1 endpoints given, 0 removed", g1); reason != want {
		t.Errorf("generation %d stored with %q, want %q", down.GetGeneration(), reason, want)
	}
	if p.metric(t, "dnsplan_planner_targets_healthy") != 3 { // lb-a, lb-c, static
		t.Errorf("targets_healthy %v", p.metric(t, "dnsplan_planner_targets_healthy"))
	}
	p.settle(t, 3)
	if g := newest(t, cl).GetGeneration(); g != g1+1 {
		t.Fatalf("generation %d after one change, want %d", g, g1+1)
	}

	b.Recover()
	up := waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 100, "lb-c": 50})
	if up.GetGeneration() != g1+2 {
		t.Errorf("lb-b back is generation %d, want %d", up.GetGeneration(), g1+2)
	}

	// Every target fails: the endpoint fails open at full capacity rather
	// than being emptied. Take lb-a out first, so the fail-open plan is a
	// change the test can see.
	a.Fail()
	waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 0, "lb-b": 100, "lb-c": 50})
	if v := p.metric(t, "dnsplan_planner_fail_open", "endpoint", endpoint); v != 0 {
		t.Errorf("fail_open %v with healthy targets", v)
	}
	b.Fail()
	c.Fail()
	clustertest.WaitFor(t, clustertest.LongWait, "every target unhealthy", func() bool {
		h := p.p.Health()
		return !h["lb-a"] && !h["lb-b"] && !h["lb-c"]
	})
	open := waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 100, "lb-c": 50})
	if v := p.metric(t, "dnsplan_planner_fail_open", "endpoint", endpoint); v != 1 {
		t.Errorf("fail_open{%s} = %v while every target is down", endpoint, v)
	}
	if v := p.metric(t, "dnsplan_planner_fail_open", "endpoint", "static.dnsplan.test."); v != 0 {
		t.Errorf("fail_open{static} = %v", v)
	}
	if w := weightsOf(open, "static.dnsplan.test."); !equal(w, map[string]uint32{"static": 7}) {
		t.Errorf("static endpoint %v", w)
	}

	// Leaving fail-open with one target back would remove more than half
	// the weight at once (the velocity limit); with every target back
	// the records equal the fail-open plan's, so nothing new is stored.
	a.Recover()
	b.Recover()
	c.Recover()
	clustertest.WaitFor(t, clustertest.LongWait, "fail-open cleared", func() bool { return p.metric(t, "dnsplan_planner_fail_open", "endpoint", endpoint) == 0 })
	clustertest.WaitFor(t, clustertest.LongWait, "every target healthy", func() bool {
		h := p.p.Health()
		return h["lb-a"] && h["lb-b"] && h["lb-c"]
	})
	p.settle(t, 3)
	if g := newest(t, cl).GetGeneration(); g != open.GetGeneration() {
		t.Errorf("generation %d after recovering into the fail-open records, want %d", g, open.GetGeneration())
	}

	for _, plan := range allPlans(t, cl) {
		if plan.GetPlannerId() != "p1" {
			t.Errorf("generation %d by %q", plan.GetGeneration(), plan.GetPlannerId())
		}
	}
}

// applyAll applies a generation to every endpoint as an enactor would, so
// that it is what the cluster serves (velocity is judged on that).
func applyAll(t *testing.T, cl *client.Client, gen uint64) {
	t.Helper()
	ctx := clustertest.Ctx(t)
	l, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/test", Holder: "test-enactor", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, LeaseName: l.GetName(), LeaseToken: l.GetToken(), EnactorId: "test-enactor"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range resp.GetResults() {
		if r.GetOutcome() != pb.Outcome_OUTCOME_APPLIED {
			t.Fatalf("apply %d: %v", gen, r)
		}
	}
}

// Three of four equal targets fail at once (they share one upstream, so
// their checks fail in the same probe round): the plan would remove 75% of
// what the endpoint serves, over the default limit of 50%. The cluster
// refuses it; the planner counts and logs the refusal and tries again next
// round, never with force, so the stored plan stays as it was and the
// history shows the rejections.
func TestPlannerVelocityRefusedNotForced(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 1})
	cl := tc.Client()
	_, check1 := startBackend(t, "one")
	shared, checkShared := startBackend(t, "shared")
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	writeFile(t, inv, inventoryYAML(30,
		target{"lb-1", "192.0.2.1", 100, check1},
		target{"lb-2", "192.0.2.2", 100, checkShared},
		target{"lb-3", "192.0.2.3", 100, checkShared},
		target{"lb-4", "192.0.2.4", 100, checkShared},
	))
	p := startPlanner(t, tc, "p1", inv)
	all := map[string]uint32{"lb-1": 100, "lb-2": 100, "lb-3": 100, "lb-4": 100}
	g1 := waitPlan(t, cl, endpoint, all).GetGeneration()
	applyAll(t, cl, g1)

	shared.Fail()
	// Three refusals: the planner retries every round.
	p.waitMetric(t, 3, "dnsplan_planner_plans_refused_total", "reason", "velocity")
	h := p.p.Health()
	if !h["lb-1"] || h["lb-2"] || h["lb-3"] || h["lb-4"] {
		t.Errorf("health %v", h)
	}
	if got := newest(t, cl); got.GetGeneration() != g1 || !equal(weightsOf(got, endpoint), all) {
		t.Fatalf("the refused plan got in: generation %d %v", got.GetGeneration(), weightsOf(got, endpoint))
	}

	hist, err := cl.ListHistory(clustertest.Ctx(t), &pb.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rejected := 0
	for _, ev := range hist.GetEvents() {
		if ev.GetKind() != "submit" {
			continue
		}
		if ev.GetReason() == "forced" {
			t.Errorf("a forced submission: %v", ev)
		}
		if ev.GetOutcome() == "rejected" {
			if ev.GetActor() != "p1" || !strings.Contains(ev.GetReason(), "velocity") || ev.GetEndpoint() != endpoint {
				t.Errorf("unexpected rejection %v", ev)
			}
			rejected++
		}
	}
	if rejected < 3 {
		t.Errorf("history shows %d rejected submissions, want at least 3", rejected)
	}

	// The upstream comes back: the desired plan equals the stored one
	// again, and nothing was ever stored past generation g1.
	shared.Recover()
	clustertest.WaitFor(t, clustertest.LongWait, "the shared targets healthy again", func() bool {
		h := p.p.Health()
		return h["lb-2"] && h["lb-3"] && h["lb-4"]
	})
	p.settle(t, 3)
	if got := newest(t, cl).GetGeneration(); got != g1 {
		t.Errorf("generation %d, want %d", got, g1)
	}
	if n := len(allPlans(t, cl)); n != 1 {
		t.Errorf("%d plans stored, want 1", n)
	}
}

// One endpoint over the velocity limit does not hold up the others: the
// cluster names the refused endpoint, the planner keeps it at its stored
// records and stores the other endpoint's change.
func TestPlannerHoldsOnlyTheRefusedEndpoint(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 1})
	cl := tc.Client()
	_, check1 := startBackend(t, "one")
	shared, checkShared := startBackend(t, "shared")
	_, checkW1 := startBackend(t, "w1")
	w2, checkW2 := startBackend(t, "w2")
	const web = "web.dnsplan.test."
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	writeFile(t, inv, fmt.Sprintf(`zone: dnsplan.test.
endpoints:
  - name: %s
    ttl: 30
    targets:
      - {id: lb-1, address: 192.0.2.1, capacity: 100, check: "%s"}
      - {id: lb-2, address: 192.0.2.2, capacity: 100, check: "%s"}
      - {id: lb-3, address: 192.0.2.3, capacity: 100, check: "%s"}
      - {id: lb-4, address: 192.0.2.4, capacity: 100, check: "%s"}
  - name: %s
    ttl: 30
    targets:
      - {id: w-1, address: 192.0.2.11, capacity: 100, check: "%s"}
      - {id: w-2, address: 192.0.2.12, capacity: 100, check: "%s"}
`, endpoint, check1, checkShared, checkShared, checkShared, web, checkW1, checkW2))
	p := startPlanner(t, tc, "p1", inv)
	all := map[string]uint32{"lb-1": 100, "lb-2": 100, "lb-3": 100, "lb-4": 100}
	g1 := waitPlan(t, cl, endpoint, all).GetGeneration()
	applyAll(t, cl, g1)

	// api would drop 75% (over the 50% limit), web 50% (at it).
	shared.Fail()
	w2.Fail()
	got := waitPlan(t, cl, web, map[string]uint32{"w-1": 100, "w-2": 0})
	if w := weightsOf(got, endpoint); !equal(w, all) {
		t.Fatalf("generation %d changed the refused endpoint: %v, want it held at %v", got.GetGeneration(), w, all)
	}
	if got.GetForced() {
		t.Fatalf("generation %d was forced", got.GetGeneration())
	}
	p.waitMetric(t, 1, "dnsplan_planner_endpoints_held")
	p.waitMetric(t, 1, "dnsplan_planner_plans_refused_total", "reason", "velocity")
}

// An inventory edit that drops an endpoint's only IPv4 target would empty
// its A answers: the cluster refuses the plan (reason FAMILY) and the
// planner treats it like a velocity refusal: counted, logged, retried each
// round, never forced.
func TestPlannerFamilyRefusedNotForced(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 1})
	cl := tc.Client()
	_, check4 := startBackend(t, "v4")
	_, check6 := startBackend(t, "v6")
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	writeFile(t, inv, inventoryYAML(30,
		target{"lb-4", "192.0.2.4", 100, check4},
		target{"lb-6", "2001:db8::6", 100, check6},
	))
	p := startPlanner(t, tc, "p1", inv)
	g1 := waitPlan(t, cl, endpoint, map[string]uint32{"lb-4": 100, "lb-6": 100}).GetGeneration()
	applyAll(t, cl, g1)

	writeFile(t, inv, inventoryYAML(30, target{"lb-6", "2001:db8::6", 100, check6}))
	p.waitMetric(t, 2, "dnsplan_planner_plans_refused_total", "reason", "family")
	if got := newest(t, cl).GetGeneration(); got != g1 {
		t.Fatalf("the refused plan got in: generation %d, want %d", got, g1)
	}
}

// Two planners on a three-node cluster: only the lease holder submits,
// one generation per health change, named after it; the other probes and
// stands by, and when the holder stops it takes over and submits the next
// change.
func TestTwoPlannersOneSubmits(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 3})
	cl := tc.Client()
	a, checkA := startBackend(t, "a")
	b, checkB := startBackend(t, "b")
	_, checkC := startBackend(t, "c")
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	writeFile(t, inv, inventoryYAML(30,
		target{"lb-a", "192.0.2.1", 100, checkA},
		target{"lb-b", "192.0.2.2", 100, checkB},
		target{"lb-c", "192.0.2.3", 100, checkC},
	))
	planners := []*runningPlanner{startPlanner(t, tc, "planner-1", inv), startPlanner(t, tc, "planner-2", inv)}

	var holder, standby *runningPlanner
	clustertest.WaitFor(t, clustertest.LongWait, "one planner holding the lease", func() bool {
		l0, l1 := planners[0].p.Leading(), planners[1].p.Leading()
		switch {
		case l0 && !l1:
			holder, standby = planners[0], planners[1]
		case l1 && !l0:
			holder, standby = planners[1], planners[0]
		default:
			return false
		}
		return true
	})
	first := waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 100, "lb-c": 100})
	if first.GetPlannerId() != holder.id {
		t.Fatalf("first plan by %q, holder is %q", first.GetPlannerId(), holder.id)
	}
	g1 := first.GetGeneration()
	clustertest.WaitFor(t, clustertest.LongWait, "the standby probing every target", standby.p.Ready)
	holder.settle(t, 3)

	// One change: one generation, by the holder. Wait until the standby
	// has seen the change too and the holder has settled, so a standby
	// that submitted would have done so by now.
	a.Fail()
	waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 0, "lb-b": 100, "lb-c": 100})
	clustertest.WaitFor(t, clustertest.LongWait, "the standby seeing lb-a down", func() bool {
		h, ok := standby.p.Health()["lb-a"]
		return ok && !h
	})
	holder.settle(t, 5)
	plans := allPlans(t, cl)
	if len(plans) != 2 || plans[1].GetGeneration() != g1+1 || plans[1].GetPlannerId() != holder.id {
		t.Fatalf("after one change: %v", plans)
	}
	if n := standby.metric(t, "dnsplan_planner_plans_submitted_total"); n != 0 {
		t.Errorf("the standby submitted %v plans", n)
	}
	if standby.metric(t, "dnsplan_planner_lease_held") != 0 {
		t.Error("the standby's lease_held gauge is not 0")
	}

	// The holder stops (its context is cancelled, the lease released):
	// the standby takes over, finds the stored plan current, and submits
	// the next change itself.
	holder.stop()
	clustertest.WaitFor(t, clustertest.LongWait, "the standby taking the lease", standby.p.Leading)
	standby.settle(t, 2)
	if got := newest(t, cl).GetGeneration(); got != g1+1 {
		t.Fatalf("the takeover stored generation %d with nothing changed", got)
	}
	b.Fail()
	next := waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 0, "lb-b": 0, "lb-c": 100})
	standby.settle(t, 3)
	if next.GetGeneration() != g1+2 || next.GetPlannerId() != standby.id {
		t.Errorf("the change after the takeover: generation %d by %q, want %d by %q",
			next.GetGeneration(), next.GetPlannerId(), g1+2, standby.id)
	}
	if n := len(allPlans(t, cl)); n != 3 {
		t.Errorf("%d plans, want 3", n)
	}
}

// The inventory file is polled: a valid change takes effect (keeping
// what the probes learned), an invalid one is refused, counted once, and
// the last good inventory stays; Reload reports the refusal.
func TestPlannerReload(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 1})
	cl := tc.Client()
	_, checkA := startBackend(t, "a")
	b, checkB := startBackend(t, "b")
	_, checkC := startBackend(t, "c")
	inv := filepath.Join(t.TempDir(), "inventory.yaml")
	writeFile(t, inv, inventoryYAML(30,
		target{"lb-a", "192.0.2.1", 100, checkA},
		target{"lb-b", "192.0.2.2", 100, checkB},
	))
	p := startPlanner(t, tc, "p1", inv)
	waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 100})
	b.Fail()
	waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 0})

	// A valid change: a new TTL and a new target, lb-b still failing.
	writeFile(t, inv, inventoryYAML(60,
		target{"lb-a", "192.0.2.1", 100, checkA},
		target{"lb-b", "192.0.2.2", 100, checkB},
		target{"lb-c", "192.0.2.3", 100, checkC},
	))
	changed := waitPlan(t, cl, endpoint, map[string]uint32{"lb-a": 100, "lb-b": 0, "lb-c": 100})
	if ttl := changed.GetEndpoints()[0].GetTtl(); ttl != 60 {
		t.Errorf("ttl %d after the reload, want 60", ttl)
	}
	if p.metric(t, "dnsplan_planner_inventory_reloads_total") != 1 {
		t.Errorf("reloads_total %v", p.metric(t, "dnsplan_planner_inventory_reloads_total"))
	}
	gen := changed.GetGeneration()

	// An invalid change: refused, counted once however often it is
	// polled, the last good inventory kept and no plan stored.
	writeFile(t, inv, inventoryYAML(0, target{"lb-a", "192.0.2.1", 100, checkA}))
	p.waitMetric(t, 1, "dnsplan_planner_inventory_reload_errors_total")
	p.settle(t, 5)
	if v := p.metric(t, "dnsplan_planner_inventory_reload_errors_total"); v != 1 {
		t.Errorf("one bad file counted %v times", v)
	}
	if got := p.p.Inventory(); got.Endpoints[0].TTL != 60 || len(got.Endpoints[0].Targets) != 3 {
		t.Errorf("inventory after a refused reload: %+v", got)
	}
	if g := newest(t, cl).GetGeneration(); g != gen {
		t.Errorf("generation %d after a refused reload, want %d", g, gen)
	}
	err := p.p.Reload()
	if err == nil || !strings.Contains(err.Error(), "ttl 0 outside 1..86400") || !strings.Contains(err.Error(), inv) {
		t.Errorf("Reload of a bad file: %v", err)
	}
	if v := p.metric(t, "dnsplan_planner_inventory_reload_errors_total"); v != 2 {
		t.Errorf("an explicit Reload of a bad file counted %v, want 2", v)
	}

	// Fixed: it loads, and an explicit Reload of it is a no-op.
	writeFile(t, inv, inventoryYAML(90,
		target{"lb-a", "192.0.2.1", 100, checkA},
		target{"lb-b", "192.0.2.2", 100, checkB},
	))
	if err := p.p.Reload(); err != nil {
		t.Fatal(err)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "a plan with ttl 90 and no lb-c", func() bool {
		pl := newest(t, cl)
		return pl.GetEndpoints()[0].GetTtl() == 90 && equal(weightsOf(pl, endpoint), map[string]uint32{"lb-a": 100, "lb-b": 0})
	})
	if h := p.p.Health(); h["lb-b"] || !h["lb-a"] {
		t.Errorf("health after reloads %v", h)
	}
	if v := p.metric(t, "dnsplan_planner_target_healthy", "target", "lb-c"); v != -1 {
		t.Errorf("removed target lb-c still has a health series (%v)", v)
	}
}
