package integration

import (
	"context"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Apply what was reviewed, through a real cluster (through a follower,
// so the checks hold on a forwarded call): a submission expecting a parent
// that moved, or carrying another plan than the reviewed digest, stores
// nothing; the stored plan carries the digest the contract defines.
func TestReviewedSubmission(t *testing.T) {
	cl := followerClient(t, clustertest.Start(t, clustertest.Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan := func(weight uint32) *pb.Plan {
		return &pb.Plan{PlannerId: "ops", Endpoints: []*pb.EndpointPlan{{Name: endpoint, Ttl: 30,
			Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: weight}, {Id: "lb-2", Address: "192.0.2.2", Weight: 1}}}}}
	}
	first, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(1), ExpectedParent: proto.Uint64(0)})
	if err != nil {
		t.Fatalf("first plan, expecting none before it: %v", err)
	}
	reviewed := plan(2)
	digest := contract.PlanDigest(reviewed)
	for _, tc := range []struct {
		what   string
		req    *pb.SubmitPlanRequest
		reason contract.Reason
	}{
		{"expecting no plan", &pb.SubmitPlanRequest{Plan: reviewed, ExpectedParent: proto.Uint64(0)}, contract.ReasonParentMoved},
		{"expecting a plan not stored", &pb.SubmitPlanRequest{Plan: reviewed, ExpectedParent: proto.Uint64(first.Generation + 1)}, contract.ReasonParentMoved},
		{"another plan than reviewed", &pb.SubmitPlanRequest{Plan: plan(3), ExpectedParent: proto.Uint64(first.Generation), ExpectedDigest: digest}, contract.ReasonDigest},
		{"below the endpoint's minimum healthy", &pb.SubmitPlanRequest{Plan: func() *pb.Plan {
			p := plan(0)
			p.Endpoints[0].MinHealthyTargets = 2
			return p
		}()}, contract.ReasonMinHealthy},
	} {
		_, err := cl.SubmitPlan(ctx, tc.req)
		if status.Code(err) != codes.FailedPrecondition || client.Reason(err) != tc.reason {
			t.Errorf("%s: %v (reason %q), want FAILED_PRECONDITION / %s", tc.what, err, client.Reason(err), tc.reason)
		}
	}
	second, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: reviewed, ExpectedParent: proto.Uint64(first.Generation), ExpectedDigest: digest})
	if err != nil || second.Generation != first.Generation+1 {
		t.Fatalf("the reviewed plan on its parent: %v, %v", second, err)
	}
	got, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: second.Generation})
	if err != nil || got.GetDigest() != digest {
		t.Fatalf("stored digest %q (%v), want %s", got.GetDigest(), err, digest)
	}
}

// followerClient is a client of one follower of c only, so that every
// write it makes is forwarded to the leader.
func followerClient(t *testing.T, c *clustertest.Cluster) *client.Client {
	t.Helper()
	cl, err := client.New([]string{c.GRPCAddrs[(c.Leader()+1)%3]}, client.WithLogger(c.Log))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// Deltas through a real cluster (through a follower): a delta on the
// newest plan stores that plan with its changes, whole, with the digest
// of the whole; a delta on a parent that moved, removing what the parent
// does not hold, leaving no endpoint or naming no parent stores nothing.
func TestDeltaSubmission(t *testing.T) {
	cl := followerClient(t, clustertest.Start(t, clustertest.Options{}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ep := func(name string, weight uint32) *pb.EndpointPlan {
		return &pb.EndpointPlan{Name: name, Ttl: 30, Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: weight}, {Id: "lb-2", Address: "192.0.2.2", Weight: 1}}}
	}
	a, b, n := "a.dnsplan.test.", "b.dnsplan.test.", "new.dnsplan.test."
	first, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "ops", Endpoints: []*pb.EndpointPlan{ep(a, 1), ep(b, 1)}}})
	if err != nil {
		t.Fatal(err)
	}
	ops := &pb.Plan{PlannerId: "ops"}
	delta := &pb.PlanDelta{Endpoints: []*pb.EndpointPlan{ep(a, 2), ep(n, 1)}}
	for _, tc := range []struct {
		what string
		req  *pb.SubmitPlanRequest
		code codes.Code
	}{
		{"on a parent that moved", &pb.SubmitPlanRequest{Plan: ops, Delta: delta, ExpectedParent: proto.Uint64(first.Generation - 1)}, codes.FailedPrecondition},
		{"removing what the parent does not hold", &pb.SubmitPlanRequest{Plan: ops, Delta: &pb.PlanDelta{Endpoints: delta.Endpoints, Remove: []string{"gone.dnsplan.test."}}, ExpectedParent: proto.Uint64(first.Generation)}, codes.InvalidArgument},
		{"leaving no endpoint", &pb.SubmitPlanRequest{Plan: ops, Delta: &pb.PlanDelta{Remove: []string{a, b}}, ExpectedParent: proto.Uint64(first.Generation)}, codes.InvalidArgument},
		{"naming no parent", &pb.SubmitPlanRequest{Plan: ops, Delta: delta}, codes.InvalidArgument},
		{"with endpoints in the plan too", &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "ops", Endpoints: delta.Endpoints}, Delta: delta, ExpectedParent: proto.Uint64(first.Generation)}, codes.InvalidArgument},
	} {
		if _, err := cl.SubmitPlan(ctx, tc.req); status.Code(err) != tc.code {
			t.Errorf("a delta %s: %v, want %s", tc.what, err, tc.code)
		}
	}
	whole := &pb.Plan{PlannerId: "ops", Endpoints: []*pb.EndpointPlan{ep(a, 2), ep(n, 1)}}
	second, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: ops, Delta: &pb.PlanDelta{Endpoints: delta.Endpoints, Remove: []string{b}},
		ExpectedParent: proto.Uint64(first.Generation), ExpectedDigest: contract.PlanDigest(whole)})
	if err != nil || second.Generation != first.Generation+1 {
		t.Fatalf("a delta on the newest plan: %v, %v", second, err)
	}
	got, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: second.Generation})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.GetEndpoints()) != 2 || !proto.Equal(got.GetEndpoints()[0], whole.Endpoints[0]) || !proto.Equal(got.GetEndpoints()[1], whole.Endpoints[1]) ||
		got.GetDigest() != contract.PlanDigest(whole) {
		t.Fatalf("stored %v (digest %s), want %v", got.GetEndpoints(), got.GetDigest(), whole.Endpoints)
	}
}

// A preview through a real cluster: a dry run stores nothing, shows what
// the plan changes against the newest plan, and judges it by the rules
// an apply would meet now, against what the endpoint serves.
func TestDiffPlansPreview(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan := func(a1, a2, v6 uint32) *pb.Plan {
		return &pb.Plan{PlannerId: "ops", Endpoints: []*pb.EndpointPlan{{Name: endpoint, Ttl: 30, Targets: []*pb.Target{
			{Id: "lb-1", Address: "192.0.2.1", Weight: a1}, {Id: "lb-2", Address: "192.0.2.2", Weight: a2},
			{Id: "lb-3", Address: "2001:db8::1", Weight: v6}}}}}
	}
	first, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(100, 100, 10)})
	if err != nil {
		t.Fatal(err)
	}
	lease, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: first.Generation, LeaseName: lease.Name, LeaseToken: lease.Token, EnactorId: "az-a"}); err != nil {
		t.Fatal(err)
	}
	broken := func(d *pb.PlanDiff) map[string]string {
		out := map[string]string{}
		for _, r := range d.GetEndpoints()[0].GetRules() {
			if !r.GetOk() {
				out[r.GetRule()] = r.GetReasonCode()
			}
		}
		return out
	}
	for _, tc := range []struct {
		what   string
		plan   *pb.Plan
		broken map[string]string
		a      float64
	}{
		{"a drain of one of two", plan(100, 0, 10), map[string]string{}, -50},
		{"three quarters of A gone", plan(50, 0, 10), map[string]string{"velocity": "VELOCITY"}, -75},
		{"AAAA emptied", plan(100, 100, 0), map[string]string{"family": "FAMILY"}, 0},
	} {
		d, err := cl.DiffPlans(ctx, &pb.DiffPlansRequest{Plan: tc.plan})
		if err != nil {
			t.Fatalf("%s: %v", tc.what, err)
		}
		if d.FromGeneration != first.Generation || d.ToGeneration != 0 || d.NewestGeneration != first.Generation || d.ToDigest != contract.PlanDigest(tc.plan) {
			t.Errorf("%s: from %d to %d newest %d digest %s", tc.what, d.FromGeneration, d.ToGeneration, d.NewestGeneration, d.ToDigest)
		}
		if got := broken(d); !reflect.DeepEqual(got, tc.broken) {
			t.Errorf("%s: broken rules %v, want %v", tc.what, got, tc.broken)
		}
		if got := d.GetEndpoints()[0].GetAChangePercent(); got != tc.a {
			t.Errorf("%s: A capacity change %v%%, want %v%%", tc.what, got, tc.a)
		}
		// A forced plan meets no rule to judge.
		if f, err := cl.DiffPlans(ctx, &pb.DiffPlansRequest{Plan: tc.plan, Force: true}); err != nil || len(f.GetEndpoints()[0].GetRules()) != 0 {
			t.Errorf("%s, forced: rules %v (%v), want none", tc.what, f.GetEndpoints()[0].GetRules(), err)
		}
	}
	st, err := cl.Status(ctx)
	if err != nil || st.GetNextGeneration() != first.Generation+1 {
		t.Fatalf("dry runs stored something: next generation %d (%v)", st.GetNextGeneration(), err)
	}
	second, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(100, 0, 10)})
	if err != nil {
		t.Fatal(err)
	}
	d, err := cl.DiffPlans(ctx, &pb.DiffPlansRequest{FromGeneration: first.Generation, ToGeneration: second.Generation})
	if err != nil {
		t.Fatal(err)
	}
	e := d.GetEndpoints()[0]
	if e.Change != contract.ChangeChanged || !reflect.DeepEqual(e.Removed, []string{"192.0.2.2"}) || d.ToDigest != contract.PlanDigest(plan(100, 0, 10)) {
		t.Errorf("diff of two stored plans: %v", d)
	}
	if _, err := cl.DiffPlans(ctx, &pb.DiffPlansRequest{FromGeneration: 99, ToGeneration: second.Generation}); status.Code(err) != codes.NotFound {
		t.Errorf("diff from an unknown generation: %v, want NOT_FOUND", err)
	}
	if _, err := cl.DiffPlans(ctx, &pb.DiffPlansRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("diff of nothing: %v, want INVALID_ARGUMENT", err)
	}
}

// One endpoint's timeline and an export since a time, through the API:
// only that endpoint's events, each apply with what it served before and
// how its records changed.
func TestHistoryTimeline(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	other := "other.dnsplan.test."
	plan := func(w uint32) *pb.Plan {
		return &pb.Plan{PlannerId: "ops", Endpoints: []*pb.EndpointPlan{
			{Name: endpoint, Ttl: 30, Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: w}, {Id: "lb-2", Address: "192.0.2.2", Weight: 1}}},
			{Name: other, Ttl: 30, Targets: []*pb.Target{{Id: "lb-9", Address: "192.0.2.9", Weight: 1}}}}}
	}
	lease, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	var gens []uint64
	for _, w := range []uint32{1, 2} {
		sub, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(w)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: sub.Generation, LeaseName: lease.Name, LeaseToken: lease.Token, EnactorId: "az-a"}); err != nil {
			t.Fatal(err)
		}
		gens = append(gens, sub.Generation)
	}
	h, err := cl.ListHistory(ctx, &pb.ListHistoryRequest{Endpoint: "API.dnsplan.test."})
	if err != nil {
		t.Fatal(err)
	}
	var applies []*pb.HistoryEvent
	for _, ev := range h.Events {
		if ev.Endpoint != endpoint {
			t.Fatalf("the timeline of %s holds an event of %q: %v", endpoint, ev.Endpoint, ev)
		}
		if ev.KindCode == pb.HistoryKind_HISTORY_KIND_APPLY {
			applies = append(applies, ev)
		}
	}
	if len(applies) != 2 || applies[1].PreviousGeneration != gens[0] || applies[1].Generation != gens[1] ||
		len(applies[1].GetDiff().GetWeights()) != 1 || applies[1].GetDiff().GetWeights()[0].GetTo() != 2 {
		t.Fatalf("apply events %v", applies)
	}
	all, err := cl.ListHistory(ctx, &pb.ListHistoryRequest{Since: applies[1].Time})
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range all.Events {
		if ev.Time.AsTime().Before(applies[1].Time.AsTime()) {
			t.Errorf("an event of %v in the history since %v", ev.Time.AsTime(), applies[1].Time.AsTime())
		}
	}
	if len(all.Events) < 2 { // both endpoints' applies of the second plan
		t.Errorf("%d events since the second apply, want at least 2", len(all.Events))
	}
	if _, err := cl.ListHistory(ctx, &pb.ListHistoryRequest{Endpoint: "not a name"}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a timeline of an invalid name: %v, want INVALID_ARGUMENT", err)
	}
}

// A rollback through a real cluster: the plan of earlier records is
// stored as a new generation, an enactor applies it like any plan, and
// the endpoint serves the earlier records again on every node.
func TestRollbackPlan(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	lease, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(gen uint64) {
		t.Helper()
		if _, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, LeaseName: lease.Name, LeaseToken: lease.Token, EnactorId: "az-a"}); err != nil {
			t.Fatal(err)
		}
	}
	var gens []uint64
	for _, addr := range []string{"192.0.2.1", "192.0.2.2"} {
		sub, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "ops", Endpoints: []*pb.EndpointPlan{{Name: endpoint, Ttl: 30,
			Targets: []*pb.Target{{Id: "lb", Address: addr, Weight: 1}}}}}, Force: true})
		if err != nil {
			t.Fatal(err)
		}
		apply(sub.Generation)
		gens = append(gens, sub.Generation)
	}
	if _, err := cl.CleanupPlans(ctx, &pb.CleanupPlansRequest{KeepLast: 1}); err != nil {
		t.Fatal(err)
	}
	// The rollback to 192.0.2.1 empties no family but drops all of
	// 192.0.2.2's capacity: the velocity rule refuses it unless forced.
	if _, err := cl.RollbackPlan(ctx, &pb.RollbackPlanRequest{Reason: "drill"}); status.Code(err) != codes.FailedPrecondition || client.Reason(err) != contract.ReasonVelocity {
		t.Fatalf("rollback past the velocity limit: %v, want VELOCITY", err)
	}
	rb, err := cl.RollbackPlan(ctx, &pb.RollbackPlanRequest{Reason: "drill", Force: true})
	if err != nil {
		t.Fatal(err)
	}
	apply(rb.Generation)
	for i := range c.GRPCAddrs {
		clustertest.WaitFor(t, 10*time.Second, "the rolled-back records on node "+c.IDs[i], func() bool {
			a, err := cl.GetAppliedOf(ctx, c.GRPCAddrs[i], endpoint)
			return err == nil && a.Generation == rb.Generation && len(a.Targets) == 1 && a.Targets[0].Address == "192.0.2.1"
		})
	}
}

// A planner that rewrites half the endpoints at once (a broken source):
// the cluster stores its plan for review and freezes itself in the same
// step, so nothing of it is served; the diff shows why; a rollback to
// what is served and an unfreeze resume service with the old records.
func TestFreezeOnDoubt(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan := func(bad int) *pb.Plan {
		p := &pb.Plan{PlannerId: "planner1"}
		for i := range 12 {
			addr := fmt.Sprintf("192.0.2.%d", i+1)
			if i < bad {
				addr = "203.0.113.66"
			}
			p.Endpoints = append(p.Endpoints, &pb.EndpointPlan{Name: fmt.Sprintf("e%d.dnsplan.test.", i), Ttl: 30,
				Targets: []*pb.Target{{Id: "lb", Address: addr, Weight: 1}}})
		}
		return p
	}
	lease, err := cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: durationpb.New(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(gen uint64) error {
		_, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, LeaseName: lease.Name, LeaseToken: lease.Token, EnactorId: "az-a"})
		return err
	}
	good, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(0)})
	if err != nil || good.Frozen {
		t.Fatalf("first plan: %v %v", good, err)
	}
	if err := apply(good.Generation); err != nil {
		t.Fatal(err)
	}
	bad, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(6)})
	if err != nil || !bad.Frozen || !strings.Contains(bad.FreezeReason, "changes 6 of 12 endpoints") {
		t.Fatalf("a plan changing half the endpoints: %v, %v; want it stored and the cluster frozen", bad, err)
	}
	// Status is each node's own view: every node shows the freeze and why.
	for i, addr := range c.GRPCAddrs {
		clustertest.WaitFor(t, 5*time.Second, "node "+c.IDs[i]+" shows the freeze", func() bool {
			st, err := cl.StatusOf(ctx, addr)
			return err == nil && st.Frozen && strings.HasPrefix(st.FreezeReason, "doubt:")
		})
	}
	if err := apply(bad.Generation); client.Reason(err) != contract.ReasonFrozen {
		t.Fatalf("applying the doubtful plan: %v, want FROZEN", err)
	}
	if a, err := cl.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: "e0.dnsplan.test."}); err != nil || a.Generation != good.Generation {
		t.Fatalf("served after the doubt: %v %v, want generation %d", a, err, good.Generation)
	}
	d, err := cl.DiffPlans(ctx, &pb.DiffPlansRequest{FromGeneration: good.Generation, ToGeneration: bad.Generation})
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, e := range d.Endpoints {
		if e.Change == contract.ChangeChanged {
			changed++
		}
	}
	if changed != 6 {
		t.Errorf("diff shows %d changed endpoints, want 6", changed)
	}
	rb, err := cl.RollbackPlan(ctx, &pb.RollbackPlanRequest{ToGeneration: good.Generation, Reason: "planner read a broken source"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
	if err := apply(bad.Generation); client.Reason(err) != contract.ReasonHeld {
		t.Fatalf("applying the doubtful plan after the unfreeze: %v, want HELD", err)
	}
	if err := apply(rb.Generation); err != nil {
		t.Fatalf("applying the rollback: %v", err)
	}
	for i := range 12 {
		a, err := cl.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: fmt.Sprintf("e%d.dnsplan.test.", i)})
		if err != nil || a.Targets[0].Address != fmt.Sprintf("192.0.2.%d", i+1) {
			t.Fatalf("e%d after the rollback: %v %v", i, a, err)
		}
	}
}
