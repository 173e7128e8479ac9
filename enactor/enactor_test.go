package enactor_test

import (
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/enactor"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

var lease0 = enactor.LeaseName(0)

// Three enactors, one per zone: exactly one holds enactor/0; every plan is
// applied once and served by every node; the holder records convergence;
// clean-up keeps the newest keep_last plans and the one still applied to
// an endpoint that later plans no longer name.
func TestThreeEnactorsApplyConvergeAndCleanUp(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	cl := tc.Client()
	mon := watchMonotonic(t, tc)
	es := startEnactors(t, tc, nil, "az-a", "az-b", "az-c")
	h := waitOneHolder(t, cl, es, lease0)

	// Generation 1 names both endpoints; 2..6 only B, so A keeps serving 1.
	g1 := submit(t, cl, endpointA, endpointB)
	waitServed(t, tc, cl, g1, endpointA, endpointB)
	last := g1
	for range 5 {
		last = submit(t, cl, endpointB)
		rec := waitServed(t, tc, cl, last, endpointB)
		if rec.GetEnactorId() == "" || rec.GetLeaseToken() == 0 {
			t.Fatalf("applied record without enactor or token: %v", rec)
		}
	}
	waitServed(t, tc, cl, g1, endpointA)

	// keep_last 3: 4, 5, 6 are the newest; 1 is applied to A; 2 and 3 go.
	want := []uint64{g1, last - 2, last - 1, last}
	clustertest.WaitFor(t, clustertest.LongWait, "clean-up to keep the newest 3 plans and the applied one", func() bool {
		return slices.Equal(planGenerations(t, cl), want)
	})
	clustertest.WaitFor(t, clustertest.LongWait, "the deleted plans to be counted", func() bool {
		return metricAll(t, es, "dnsplan_enactor_plans_deleted_total") == 2
	})

	// Every generation was applied by exactly one ApplyPlan call, whoever
	// held the lease at the time.
	if got := metricAll(t, es, "dnsplan_enactor_applies_total", "outcome", "applied"); got != 6 {
		t.Errorf("applies with outcome applied = %v, want 6", got)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "a convergence time to be recorded", func() bool {
		return metricAll(t, es, "dnsplan_enactor_convergence_seconds") >= 1
	})
	if got := metricAll(t, es, "dnsplan_enactor_convergence_timeouts_total"); got != 0 {
		t.Errorf("convergence timeouts = %v, want 0 with every node up", got)
	}
	if got := metricAll(t, es, "dnsplan_enactor_leases_held", "lease", lease0); got != 1 {
		t.Errorf("leases held gauge summed over enactors = %v, want 1", got)
	}
	// Nothing in this test moves the lease, but a slow renewal on a busy
	// machine may; what must hold is that one enactor holds it.
	if h2 := waitOneHolder(t, cl, es, lease0); h2 != h {
		t.Logf("lease moved from %s to %s during the test", h.id, h2.id)
	}
	if mon.check() == 0 {
		t.Error("the monotonicity watch saw nothing")
	}
}

// Killing the active enactor (its context ends): it releases the lease,
// another enactor takes over and applies the next plan.
func TestKilledEnactorIsReplaced(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	cl := tc.Client()
	mon := watchMonotonic(t, tc)
	es := startEnactors(t, tc, nil, "az-a", "az-b", "az-c")
	h := waitOneHolder(t, cl, es, lease0)
	g1 := submit(t, cl, endpointA)
	waitServed(t, tc, cl, g1, endpointA)

	h.stop(t)
	var rest []*runningEnactor
	for _, r := range es {
		if r != h {
			rest = append(rest, r)
		}
	}
	h2 := waitOneHolder(t, cl, rest, lease0)
	g2 := submit(t, cl, endpointA)
	rec := waitServed(t, tc, cl, g2, endpointA)
	if rec.GetEnactorId() != h2.id {
		t.Errorf("generation %d applied by %q, want the new holder %q", g2, rec.GetEnactorId(), h2.id)
	}
	mon.check()
}

// The AWS interleaving with a fenced lease: the active enactor freezes
// right before sending an apply (lease not released); another takes over
// once the lease expires and applies that plan and a newer one; when the
// frozen enactor resumes it sends its old apply with its old token, and
// the cluster fences it. No node's endpoint ever goes back.
func TestFrozenEnactorIsFencedAndNothingRegresses(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	cl := tc.Client()
	mon := watchMonotonic(t, tc)

	// Which enactor freezes, and before which generation, is decided once
	// the holder is known; the hook then pauses that enactor at the
	// moment it is about to send the apply.
	var victim atomic.Pointer[runningEnactor]
	var freezeAt atomic.Uint64
	var es []*runningEnactor
	es = startEnactors(t, tc, func(id string, c *enactor.Config) {
		c.BeforeApply = func(_ string, gen uint64) {
			if v := victim.Load(); v != nil && v.id == id && gen == freezeAt.Load() {
				v.e.Pause()
			}
		}
	}, "az-a", "az-b", "az-c")

	h := waitOneHolder(t, cl, es, lease0)
	g1 := submit(t, cl, endpointA, endpointB)
	waitServed(t, tc, cl, g1, endpointA, endpointB)
	h = waitOneHolder(t, cl, es, lease0)
	oldToken := h.e.Leases()[lease0]

	freezeAt.Store(g1 + 1)
	victim.Store(h)
	g2 := submit(t, cl, endpointA, endpointB)
	clustertest.WaitFor(t, clustertest.LongWait, h.id+" to freeze with its apply of generation 2 held", func() bool {
		return h.gate.Paused() && h.gate.Waiting() >= 1
	})

	// Another enactor takes over once the lease expires, not before: the
	// frozen one released nothing.
	var h2 *runningEnactor
	clustertest.WaitFor(t, clustertest.LongWait, "another enactor to take the lease over", func() bool {
		l := leaseOf(t, cl, lease0)
		for _, r := range es {
			if r != h && l.GetHolder() == r.id && l.GetToken() > oldToken {
				h2 = r
				return true
			}
		}
		return false
	})
	if rel := history(t, cl, func(ev *pb.HistoryEvent) bool {
		return ev.GetKind() == "release" && ev.GetActor() == h.id && ev.GetOutcome() == "accepted"
	}); len(rel) != 0 {
		t.Fatalf("the frozen enactor released its lease:\n%s", describe(rel))
	}
	if rec := waitServed(t, tc, cl, g2, endpointA, endpointB); rec.GetEnactorId() != h2.id {
		t.Errorf("generation %d applied by %q, want %q", g2, rec.GetEnactorId(), h2.id)
	}
	g3 := submit(t, cl, endpointA, endpointB)
	waitServed(t, tc, cl, g3, endpointA, endpointB)

	// Resume: the held apply goes out with the old token, too late.
	h.e.Resume()
	var fenced []*pb.HistoryEvent
	clustertest.WaitFor(t, clustertest.LongWait, "the cluster to fence the resumed enactor's apply", func() bool {
		fenced = history(t, cl, func(ev *pb.HistoryEvent) bool {
			return ev.GetKind() == "apply" && ev.GetActor() == h.id && ev.GetOutcome() == "rejected" &&
				strings.Contains(ev.GetReason(), "fenced")
		})
		return len(fenced) > 0
	})
	if ev := fenced[0]; ev.GetGeneration() != g2 || ev.GetToken() != oldToken {
		t.Errorf("fenced apply: generation %d token %d, want generation %d token %d", ev.GetGeneration(), ev.GetToken(), g2, oldToken)
	}
	clustertest.WaitFor(t, clustertest.LongWait, h.id+" to count the fenced apply", func() bool {
		return metric(t, h.reg, "dnsplan_enactor_applies_total", "outcome", "fenced") >= 1
	})
	// The old apply changed nothing, and the system carries on.
	waitServed(t, tc, cl, g3, endpointA, endpointB)
	g4 := submit(t, cl, endpointA, endpointB)
	waitServed(t, tc, cl, g4, endpointA, endpointB)
	waitOneHolder(t, cl, es, lease0)
	mon.check()
}

// The cluster, not the enactor, is the safety. The enactor's logic is
// replaced by a deliberately stale writer on the same client: it applies
// old generations with the current, valid token (answered STALE, nothing
// changes), and newer ones with a superseded token (FAILED_PRECONDITION,
// nothing changes). No node's endpoint ever goes back.
func TestClusterRefusesStaleWriter(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	cl := tc.Client()
	mon := watchMonotonic(t, tc)
	ctx := clustertest.Ctx(t)

	var gens []uint64
	for range 4 {
		gens = append(gens, submit(t, cl, endpointA, endpointB))
	}
	newest := gens[len(gens)-1]
	acquire := func(holder string) *pb.Lease {
		t.Helper()
		l, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: lease0, Holder: holder, Ttl: durationpb.New(time.Minute)})
		if err != nil {
			t.Fatalf("acquire as %s: %v", holder, err)
		}
		return l
	}
	apply := func(l *pb.Lease, gen uint64) (*pb.ApplyPlanResponse, error) {
		return cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, LeaseName: lease0, LeaseToken: l.GetToken(), EnactorId: l.GetHolder()})
	}

	rogue := acquire("rogue")
	if _, err := apply(rogue, newest); err != nil {
		t.Fatalf("apply newest: %v", err)
	}
	waitServed(t, tc, cl, newest, endpointA, endpointB)

	// Old generations, current token: the writer has no freshness check at
	// all, and every write is answered STALE. The newest again, with the
	// token that applied it, is a retry of a write that succeeded: APPLIED,
	// changing nothing.
	for _, gen := range []uint64{gens[0], gens[2], gens[1], gens[0], newest} {
		resp, err := apply(rogue, gen)
		if err != nil {
			t.Fatalf("stale apply of generation %d with a valid token: %v", gen, err)
		}
		want := pb.Outcome_OUTCOME_STALE
		if gen == newest {
			want = pb.Outcome_OUTCOME_APPLIED
		}
		for _, r := range resp.GetResults() {
			if r.GetOutcome() != want || r.GetAppliedGeneration() != newest {
				t.Errorf("apply of generation %d over %d: %s %v applied_generation %d, want %v at %d",
					gen, newest, r.GetEndpoint(), r.GetOutcome(), r.GetAppliedGeneration(), want, newest)
			}
		}
	}

	// A superseded token: the rogue's lease is released and granted
	// anew; the old token is refused even for a newer plan.
	if _, err := cl.ReleaseLease(ctx, &pb.ReleaseLeaseRequest{Name: lease0, Holder: rogue.GetHolder(), Token: rogue.GetToken()}); err != nil {
		t.Fatal(err)
	}
	current := acquire("rogue")
	if current.GetToken() <= rogue.GetToken() {
		t.Fatalf("new token %d not above old %d", current.GetToken(), rogue.GetToken())
	}
	g5 := submit(t, cl, endpointA, endpointB)
	for _, gen := range []uint64{g5, gens[0]} {
		if _, err := apply(rogue, gen); status.Code(err) != codes.FailedPrecondition || !strings.Contains(status.Convert(err).Message(), "fenced") {
			t.Errorf("apply of generation %d with superseded token %d: %v, want FAILED_PRECONDITION (fenced)", gen, rogue.GetToken(), err)
		}
	}
	waitServed(t, tc, cl, newest, endpointA, endpointB)

	// The current token still works for the new plan, then old ones are
	// STALE again.
	if _, err := apply(current, g5); err != nil {
		t.Fatalf("apply generation %d with the current token: %v", g5, err)
	}
	for _, gen := range gens {
		resp, err := apply(current, gen)
		if err != nil {
			t.Fatalf("stale apply of generation %d: %v", gen, err)
		}
		for _, r := range resp.GetResults() {
			if r.GetOutcome() != pb.Outcome_OUTCOME_STALE {
				t.Errorf("apply of generation %d over %d: %s %v, want STALE", gen, g5, r.GetEndpoint(), r.GetOutcome())
			}
		}
	}
	waitServed(t, tc, cl, g5, endpointA, endpointB)
	mon.check()
}

// An operator freeze stops every apply: a new plan is refused (and the
// enactor keeps its lease and retries); unfreezing lets it through.
func TestFreezeStopsAppliesUntilUnfrozen(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	cl := tc.Client()
	mon := watchMonotonic(t, tc)
	es := startEnactors(t, tc, nil, "az-a", "az-b", "az-c")
	waitOneHolder(t, cl, es, lease0)
	g1 := submit(t, cl, endpointA)
	waitServed(t, tc, cl, g1, endpointA)

	ctx := clustertest.Ctx(t)
	if _, err := cl.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: true, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	g2 := submit(t, cl, endpointA)
	clustertest.WaitFor(t, clustertest.LongWait, "an apply of the new plan to be refused as frozen, twice", func() bool {
		refused := history(t, cl, func(ev *pb.HistoryEvent) bool {
			return ev.GetKind() == "apply" && ev.GetGeneration() == g2 && ev.GetOutcome() == "rejected" &&
				strings.Contains(ev.GetReason(), "frozen")
		})
		return len(refused) >= 2
	})
	if got := metricAll(t, es, "dnsplan_enactor_applies_total", "outcome", "frozen"); got < 1 {
		t.Errorf("frozen applies counted = %v, want at least 1", got)
	}
	for id, addr := range running(tc) {
		if a := servedBy(t, cl, addr, endpointA); a.GetGeneration() != g1 {
			t.Errorf("node %s serves generation %d while frozen, want %d", id, a.GetGeneration(), g1)
		}
	}

	if _, err := cl.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
	waitServed(t, tc, cl, g2, endpointA)
	mon.check()
}

// Losing the leader node while enactors run: writes resume under a new
// leader, plans submitted afterwards are applied and served by the nodes
// left, and the read-back reports the dead node as a convergence timeout
// rather than blocking.
func TestLeaderLossPlansStillApplied(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	cl := tc.Client()
	es := startEnactors(t, tc, func(_ string, c *enactor.Config) { c.ConvergeTimeout = 2 * time.Second }, "az-a", "az-b", "az-c")
	waitOneHolder(t, cl, es, lease0)
	g1 := submit(t, cl, endpointA, endpointB)
	waitServed(t, tc, cl, g1, endpointA, endpointB)

	tc.Stop(tc.Leader())
	mon := watchMonotonic(t, tc) // on the nodes left

	for range 3 {
		g := submit(t, cl, endpointA, endpointB)
		waitServed(t, tc, cl, g, endpointA, endpointB)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "the dead node to be reported as a convergence timeout", func() bool {
		return metricAll(t, es, "dnsplan_enactor_convergence_timeouts_total") >= 1
	})
	mon.check()
}

// With several shards each endpoint is applied under its own shard's
// lease, by whoever holds it.
func TestShardsSplitEndpoints(t *testing.T) {
	const shards = 3
	tc := clustertest.Start(t, clustertest.Options{})
	cl := tc.Client()
	es := startEnactors(t, tc, func(_ string, c *enactor.Config) { c.Shards = shards }, "az-a", "az-b", "az-c")
	for i := range shards {
		waitOneHolder(t, cl, es, enactor.LeaseName(i))
	}
	eps := []string{"a.dnsplan.test.", "b.dnsplan.test.", "c.dnsplan.test.", "d.dnsplan.test.", "e.dnsplan.test.", "f.dnsplan.test."}
	g := submit(t, cl, eps...)
	waitServed(t, tc, cl, g, eps...)
	applied := history(t, cl, func(ev *pb.HistoryEvent) bool {
		return ev.GetKind() == "apply" && ev.GetGeneration() == g && ev.GetOutcome() == "applied"
	})
	seen := map[string]bool{}
	for _, ev := range applied {
		want := enactor.LeaseName(enactor.ShardOf(ev.GetEndpoint(), shards))
		if ev.GetLeaseName() != want {
			t.Errorf("%s applied under lease %s, want its shard's %s", ev.GetEndpoint(), ev.GetLeaseName(), want)
		}
		seen[ev.GetEndpoint()] = true
	}
	if len(seen) != len(eps) {
		t.Errorf("applied endpoints %v, want all of %v:\n%s", seen, eps, describe(applied))
	}
	leases := map[string]bool{}
	for _, ep := range eps {
		leases[enactor.LeaseName(enactor.ShardOf(ep, shards))] = true
	}
	if len(leases) < 2 {
		t.Errorf("test endpoints fall in %d shard(s); pick names that spread", len(leases))
	}
}
