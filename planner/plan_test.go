package planner

import (
	"context"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// fakeCluster stores plans in memory and records every submission; it
// holds the lease for whoever asks. The main tests use a real cluster;
// this one lets a test look at every request the planner sends.
type fakeCluster struct {
	mu      sync.Mutex
	plans   []*pb.Plan
	submits []*pb.SubmitPlanRequest
	refuse  error // SubmitPlan's answer while set
	getErr  error // GetPlan's answer while set
	// noDeltas answers a delta as a cluster whose log version does not
	// take them: FAILED_PRECONDITION with no reason, before the log.
	noDeltas bool
	// oldLeader answers as a leader of a version before deltas, which
	// drops the field it does not know: a plan with no endpoints.
	oldLeader bool
}

func (f *fakeCluster) GetPlan(_ context.Context, req *pb.GetPlanRequest) (*pb.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !req.GetNewest() {
		return nil, status.Error(codes.Unimplemented, "fake serves only the newest plan")
	}
	if f.getErr != nil {
		return nil, f.getErr
	}
	if len(f.plans) == 0 {
		return nil, status.Error(codes.NotFound, "no plan")
	}
	return proto.Clone(f.plans[len(f.plans)-1]).(*pb.Plan), nil
}

func (f *fakeCluster) SubmitPlan(_ context.Context, req *pb.SubmitPlanRequest) (*pb.SubmitPlanResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.submits = append(f.submits, proto.Clone(req).(*pb.SubmitPlanRequest))
	if f.refuse != nil {
		return nil, f.refuse
	}
	plan := req.GetPlan()
	if req.GetDelta() != nil && !f.oldLeader {
		var parent *pb.Plan
		if len(f.plans) > 0 {
			parent = f.plans[len(f.plans)-1]
		}
		switch {
		case f.noDeltas:
			return nil, status.Error(codes.FailedPrecondition, "the cluster stores deltas from log version 8 on")
		case req.GetExpectedParent() != parent.GetGeneration():
			return nil, rejection(codes.FailedPrecondition, "PARENT_MOVED", "the newest plan is not the expected parent")
		}
		var err error
		if plan, err = contract.ApplyDelta(parent, plan, req.GetDelta()); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	if err := contract.ValidatePlan(plan); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	p := proto.Clone(plan).(*pb.Plan)
	p.Generation = uint64(len(f.plans) + 1)
	f.plans = append(f.plans, p)
	return &pb.SubmitPlanResponse{Generation: p.Generation}, nil
}

func (f *fakeCluster) HoldLease(ctx context.Context, name, holder string, _ time.Duration, fn func(context.Context, *pb.Lease)) error {
	fn(ctx, &pb.Lease{Name: name, Holder: holder, Token: 1})
	return ctx.Err()
}

func (f *fakeCluster) counts() (plans, submits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.plans), len(f.submits)
}

func weights(p *pb.Plan) map[string]map[string]uint32 {
	out := map[string]map[string]uint32{}
	for _, ep := range p.GetEndpoints() {
		out[ep.GetName()] = map[string]uint32{}
		for _, t := range ep.GetTargets() {
			out[ep.GetName()][t.GetId()] = t.GetWeight()
		}
	}
	return out
}

// Hole 6: when every IPv4 target of an endpoint failed its check, the
// planner built a plan with only AAAA weight, emptying the A answers (I2
// per family). It fails open per family: that family's targets keep their
// capacity, as every target does when every target fails.
func TestBuildPlanFailsOpenPerFamily(t *testing.T) {
	inv, err := ParseInventory([]byte(`zone: dnsplan.test.
endpoints:
  - name: dual.dnsplan.test.
    ttl: 30
    targets:
      - {id: v4-a, address: 192.0.2.1, capacity: 10, check: "tcp://192.0.2.1:80"}
      - {id: v4-b, address: 192.0.2.2, capacity: 20, check: "tcp://192.0.2.2:80"}
      - {id: v6-a, address: "2001:db8::1", capacity: 30, check: "tcp://[2001:db8::1]:80"}
      - {id: v6-b, address: "2001:db8::2", capacity: 40, check: "tcp://[2001:db8::2]:80"}
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		down     []string
		want     map[string]uint32
		failOpen bool
	}{
		{"all healthy", nil, map[string]uint32{"v4-a": 10, "v4-b": 20, "v6-a": 30, "v6-b": 40}, false},
		{"one IPv4 down", []string{"v4-a"}, map[string]uint32{"v4-a": 0, "v4-b": 20, "v6-a": 30, "v6-b": 40}, false},
		{"every IPv4 down", []string{"v4-a", "v4-b"}, map[string]uint32{"v4-a": 10, "v4-b": 20, "v6-a": 30, "v6-b": 40}, true},
		{"every IPv6 down, one IPv4 down", []string{"v6-a", "v6-b", "v4-b"}, map[string]uint32{"v4-a": 10, "v4-b": 0, "v6-a": 30, "v6-b": 40}, true},
		{"everything down", []string{"v4-a", "v4-b", "v6-a", "v6-b"}, map[string]uint32{"v4-a": 10, "v4-b": 20, "v6-a": 30, "v6-b": 40}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildPlan("p1", inv, func(id string) (bool, bool) { return !slices.Contains(tc.down, id), true })
			if got := weights(b.plan)["dual.dnsplan.test."]; !maps.Equal(got, tc.want) {
				t.Errorf("weights %v, want %v", got, tc.want)
			}
			if b.failOpen["dual.dnsplan.test."] != tc.failOpen {
				t.Errorf("fail open %v, want %v", b.failOpen, tc.failOpen)
			}
		})
	}
}

// Below its minimum healthy, an endpoint's families fail open by their
// share of the minimum, and every plan built meets the minimum, which the
// cluster checks with contract.MinHealthy.
func TestBuildPlanMinHealthy(t *testing.T) {
	inv, err := ParseInventory([]byte(`zone: dnsplan.test.
endpoints:
  - name: dual.dnsplan.test.
    ttl: 30
    min_healthy_fraction: 0.75
    targets:
      - {id: v4-a, address: 192.0.2.1, capacity: 10, check: "tcp://192.0.2.1:80"}
      - {id: v4-b, address: 192.0.2.2, capacity: 20, check: "tcp://192.0.2.2:80"}
      - {id: v6-a, address: "2001:db8::1", capacity: 30, check: "tcp://[2001:db8::1]:80"}
      - {id: v6-b, address: "2001:db8::2", capacity: 40, check: "tcp://[2001:db8::2]:80"}
`))
	if err != nil {
		t.Fatal(err)
	}
	// 0.75 of 4 targets: 3; each family's share, ceil(3 × 2 / 4) = 2.
	for _, tc := range []struct {
		name     string
		down     []string
		want     map[string]uint32
		failOpen bool
	}{
		{"all healthy", nil, map[string]uint32{"v4-a": 10, "v4-b": 20, "v6-a": 30, "v6-b": 40}, false},
		{"one IPv4 down: IPv4 below its share", []string{"v4-a"}, map[string]uint32{"v4-a": 10, "v4-b": 20, "v6-a": 30, "v6-b": 40}, true},
		{"one of each down", []string{"v4-a", "v6-b"}, map[string]uint32{"v4-a": 10, "v4-b": 20, "v6-a": 30, "v6-b": 40}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildPlan("p1", inv, func(id string) (bool, bool) { return !slices.Contains(tc.down, id), true })
			if got := weights(b.plan)["dual.dnsplan.test."]; !maps.Equal(got, tc.want) {
				t.Errorf("weights %v, want %v", got, tc.want)
			}
			if b.failOpen["dual.dnsplan.test."] != tc.failOpen {
				t.Errorf("fail open %v, want %v", b.failOpen, tc.failOpen)
			}
			if ep := b.plan.Endpoints[0]; ep.MinHealthyFraction != 0.75 || contract.MinHealthy(ep) != 3 {
				t.Errorf("the plan carries minimum %v (%d targets)", ep.MinHealthyFraction, contract.MinHealthy(ep))
			}
		})
	}
	// Every subset of healthy targets, every minimum: the plan built meets
	// its minimum.
	ids := []string{"v4-a", "v4-b", "v6-a", "v6-b"}
	for minimum := range 5 {
		inv.Endpoints[0].MinHealthy, inv.Endpoints[0].MinHealthyFraction = uint32(minimum), 0
		for mask := range 16 {
			b := buildPlan("p1", inv, func(id string) (bool, bool) { return mask&(1<<slices.Index(ids, id)) != 0, true })
			served := 0
			for _, tg := range b.plan.Endpoints[0].Targets {
				if tg.Weight > 0 {
					served++
				}
			}
			if served < minimum {
				t.Errorf("minimum %d, healthy mask %04b: the plan serves %d targets", minimum, mask, served)
			}
		}
	}
}

func TestBuildPlan(t *testing.T) {
	inv, err := ParseInventory([]byte(`zone: dnsplan.test.
endpoints:
  - name: b.dnsplan.test.
    ttl: 30
    targets:
      - {id: lb-2, address: 192.0.2.2, capacity: 20, check: "tcp://192.0.2.2:80"}
      - {id: lb-1, address: 192.0.2.1, capacity: 10, check: "tcp://192.0.2.1:80"}
  - name: a.dnsplan.test.
    ttl: 60
    targets:
      - {id: lb-3, address: 192.0.2.3, capacity: 5, check: "tcp://192.0.2.3:80"}
`))
	if err != nil {
		t.Fatal(err)
	}
	type state struct{ healthy, known bool }
	for _, tc := range []struct {
		name     string
		health   map[string]state
		ready    bool
		want     map[string]map[string]uint32
		failOpen []string
	}{
		{"all healthy", map[string]state{"lb-1": {true, true}, "lb-2": {true, true}, "lb-3": {true, true}}, true,
			map[string]map[string]uint32{"a.dnsplan.test.": {"lb-3": 5}, "b.dnsplan.test.": {"lb-1": 10, "lb-2": 20}}, nil},
		{"one down", map[string]state{"lb-1": {false, true}, "lb-2": {true, true}, "lb-3": {true, true}}, true,
			map[string]map[string]uint32{"a.dnsplan.test.": {"lb-3": 5}, "b.dnsplan.test.": {"lb-1": 0, "lb-2": 20}}, nil},
		{"every target of a down: fail open", map[string]state{"lb-1": {false, true}, "lb-2": {true, true}, "lb-3": {false, true}}, true,
			map[string]map[string]uint32{"a.dnsplan.test.": {"lb-3": 5}, "b.dnsplan.test.": {"lb-1": 0, "lb-2": 20}}, []string{"a.dnsplan.test."}},
		{"everything down", map[string]state{"lb-1": {false, true}, "lb-2": {false, true}, "lb-3": {false, true}}, true,
			map[string]map[string]uint32{"a.dnsplan.test.": {"lb-3": 5}, "b.dnsplan.test.": {"lb-1": 10, "lb-2": 20}}, []string{"a.dnsplan.test.", "b.dnsplan.test."}},
		{"one unknown: no plan", map[string]state{"lb-1": {true, true}, "lb-2": {true, true}}, false, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := buildPlan("p1", inv, func(id string) (bool, bool) { s := tc.health[id]; return s.healthy, s.known })
			if b.ready != tc.ready {
				t.Fatalf("ready = %v", b.ready)
			}
			if !tc.ready {
				if b.plan != nil || len(b.failOpen) != 0 {
					t.Fatalf("not ready but built %v, fail open %v", b.plan, b.failOpen)
				}
				return
			}
			if got := weights(b.plan); !equalWeights(got, tc.want) {
				t.Errorf("weights %v, want %v", got, tc.want)
			}
			if len(b.failOpen) != len(tc.failOpen) {
				t.Errorf("fail open %v, want %v", b.failOpen, tc.failOpen)
			}
			for _, ep := range tc.failOpen {
				if !b.failOpen[ep] {
					t.Errorf("fail open %v, want %v", b.failOpen, tc.failOpen)
				}
			}
			if err := contract.ValidatePlan(b.plan); err != nil {
				t.Errorf("the cluster would refuse it: %v", err)
			}
			// Deterministic: sorted endpoints and targets, the planner's id.
			if b.plan.GetPlannerId() != "p1" || b.plan.Endpoints[0].GetName() != "a.dnsplan.test." ||
				b.plan.Endpoints[1].Targets[0].GetId() != "lb-1" || b.plan.Endpoints[0].GetTtl() != 60 {
				t.Errorf("plan not in canonical order: %v", b.plan)
			}
		})
	}
}

func equalWeights(a, b map[string]map[string]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for ep, ts := range a {
		if len(ts) != len(b[ep]) {
			return false
		}
		for id, w := range ts {
			if bw, ok := b[ep][id]; !ok || bw != w {
				return false
			}
		}
	}
	return true
}

func TestSameRecords(t *testing.T) {
	base := func() *pb.Plan {
		return &pb.Plan{Generation: 7, PlannerId: "p1", Endpoints: []*pb.EndpointPlan{
			{Name: "a.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{{Id: "x", Address: "192.0.2.1", Weight: 1}, {Id: "y", Address: "2001:db8::1", Weight: 0}}},
			{Name: "b.dnsplan.test.", Ttl: 60, Targets: []*pb.Target{{Id: "z", Address: "192.0.2.3", Weight: 5}}},
		}}
	}
	for _, tc := range []struct {
		name   string
		change func(*pb.Plan)
		same   bool
	}{
		{"identical", func(*pb.Plan) {}, true},
		{"other generation, planner and time", func(p *pb.Plan) { p.Generation, p.PlannerId = 9, "p2" }, true},
		{"endpoints reordered", func(p *pb.Plan) { p.Endpoints[0], p.Endpoints[1] = p.Endpoints[1], p.Endpoints[0] }, true},
		{"targets reordered", func(p *pb.Plan) { ts := p.Endpoints[0].Targets; ts[0], ts[1] = ts[1], ts[0] }, true},
		{"name case and address spelling", func(p *pb.Plan) {
			p.Endpoints[0].Name = "A.dnsplan.test."
			p.Endpoints[0].Targets[1].Address = "2001:DB8:0::1"
		}, true},
		{"weight", func(p *pb.Plan) { p.Endpoints[0].Targets[0].Weight = 2 }, false},
		{"ttl", func(p *pb.Plan) { p.Endpoints[1].Ttl = 61 }, false},
		{"address", func(p *pb.Plan) { p.Endpoints[1].Targets[0].Address = "192.0.2.4" }, false},
		{"target id", func(p *pb.Plan) { p.Endpoints[1].Targets[0].Id = "w" }, false},
		{"extra target", func(p *pb.Plan) {
			p.Endpoints[1].Targets = append(p.Endpoints[1].Targets, &pb.Target{Id: "v", Address: "192.0.2.9", Weight: 1})
		}, false},
		{"missing endpoint", func(p *pb.Plan) { p.Endpoints = p.Endpoints[:1] }, false},
		{"renamed endpoint", func(p *pb.Plan) { p.Endpoints[1].Name = "c.dnsplan.test." }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := base()
			tc.change(p)
			if got := sameRecords(p, base()); got != tc.same {
				t.Errorf("sameRecords = %v, want %v", got, tc.same)
			}
			if got := sameRecords(base(), p); got != tc.same {
				t.Errorf("sameRecords (swapped) = %v, want %v", got, tc.same)
			}
		})
	}
}

// setHealth forces a target's health, as a run of probes would.
func setHealth(p *Planner, id string, healthy bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	h := p.health[id]
	h.known, h.healthy, h.streak = true, healthy, 0
	p.refresh()
}

// planOnce against a fake: submit when nothing is stored, nothing while
// the records match, a new plan on a change; a refusal is counted and
// retried, never forced; a failed read submits nothing.
func TestPlanOnceDecisions(t *testing.T) {
	inv := oneEndpoint(
		Target{ID: "lb-1", Address: "192.0.2.1", Capacity: 100, Check: "tcp://192.0.2.1:80"},
		Target{ID: "lb-2", Address: "192.0.2.2", Capacity: 100, Check: "tcp://192.0.2.2:80"},
	)
	fc := &fakeCluster{}
	p, err := New(Config{ID: "p1", Client: fc, Inventory: inv, Logger: clustertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := p.log
	lease := &pb.Lease{Name: LeaseName, Holder: "p1", Token: 7}
	var refused string

	p.planOnce(ctx, log, lease, &refused)
	if _, n := fc.counts(); n != 0 {
		t.Fatal("planned before every target had a probe result")
	}
	setHealth(p, "lb-1", true)
	setHealth(p, "lb-2", true)
	p.planOnce(ctx, log, lease, &refused)
	if plans, _ := fc.counts(); plans != 1 {
		t.Fatalf("%d plans after the first round, want 1", plans)
	}
	for range 3 {
		p.planOnce(ctx, log, lease, &refused)
	}
	if plans, submits := fc.counts(); plans != 1 || submits != 1 {
		t.Fatalf("unchanged health: %d plans, %d submissions", plans, submits)
	}
	if got := value(t, p.metrics.unchanged); got != 3 {
		t.Errorf("unchanged counter %v, want 3", got)
	}

	setHealth(p, "lb-2", false)
	p.planOnce(ctx, log, lease, &refused)
	if plans, _ := fc.counts(); plans != 2 || weights(fc.plans[1])["api.dnsplan.test."]["lb-2"] != 0 {
		t.Fatalf("lb-2 down: plans %v", fc.plans)
	}

	fc.mu.Lock()
	fc.refuse = rejection(codes.FailedPrecondition, "VELOCITY", "velocity limit exceeded")
	fc.mu.Unlock()
	setHealth(p, "lb-1", false) // every target down: fail open, back to full weight
	if got := value(t, p.metrics.failOpen.WithLabelValues("api.dnsplan.test.")); got != 1 {
		t.Errorf("fail-open gauge %v, want 1", got)
	}
	for range 3 {
		p.planOnce(ctx, log, lease, &refused)
	}
	if got := value(t, p.metrics.refused.WithLabelValues(refusedVelocity)); got != 3 {
		t.Errorf("velocity refusals %v, want 3 (retried each round)", got)
	}
	fc.mu.Lock()
	fc.refuse = nil
	fc.getErr = status.Error(codes.Unavailable, "no leader")
	fc.mu.Unlock()
	_, before := fc.counts()
	p.planOnce(ctx, log, lease, &refused)
	if _, after := fc.counts(); after != before {
		t.Error("submitted without knowing the newest plan")
	}
	fc.mu.Lock()
	fc.getErr = nil
	fc.mu.Unlock()
	p.planOnce(ctx, log, lease, &refused)

	fc.mu.Lock()
	defer fc.mu.Unlock()
	for i, s := range fc.submits {
		if s.GetForce() {
			t.Errorf("submission %d was forced", i)
		}
		if s.GetLeaseName() != LeaseName || s.GetLeaseToken() != lease.Token {
			t.Errorf("submission %d is not fenced by the planner lease: %q %d", i, s.GetLeaseName(), s.GetLeaseToken())
		}
		if s.GetPlan().GetPlannerId() != "p1" {
			t.Errorf("submission %d names planner %q", i, s.GetPlan().GetPlannerId())
		}
	}
	if len(fc.plans) != 3 {
		t.Fatalf("%d plans, want 3", len(fc.plans))
	}
	if w := weights(fc.plans[2])["api.dnsplan.test."]; w["lb-1"] != 100 || w["lb-2"] != 100 {
		t.Errorf("after the refusal lifted: %v, want every target at capacity (fail open)", w)
	}
}

// Against a cluster that does not take deltas yet (its log version, or
// a leader of an older version), the planner stores whole plans: the
// refused delta is sent again whole at once, and later rounds send whole
// plans until the retry period ends.
func TestPlanOnceFallsBackToWholePlans(t *testing.T) {
	inv := oneEndpoint(
		Target{ID: "lb-1", Address: "192.0.2.1", Capacity: 100, Check: "tcp://192.0.2.1:80"},
		Target{ID: "lb-2", Address: "192.0.2.2", Capacity: 100, Check: "tcp://192.0.2.2:80"},
	)
	for _, fc := range []*fakeCluster{{noDeltas: true}, {oldLeader: true}} {
		wholePlansAfterARefusedDelta(t, inv, fc)
	}
}

func wholePlansAfterARefusedDelta(t *testing.T, inv *Inventory, fc *fakeCluster) {
	t.Helper()
	p, err := New(Config{ID: "p1", Client: fc, Inventory: inv, Logger: clustertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	lease := &pb.Lease{Name: LeaseName, Holder: "p1", Token: 7}
	var refused string
	setHealth(p, "lb-1", true)
	setHealth(p, "lb-2", true)
	p.planOnce(context.Background(), p.log, lease, &refused) // nothing stored: whole
	setHealth(p, "lb-2", false)
	p.planOnce(context.Background(), p.log, lease, &refused) // a delta, refused, then whole
	setHealth(p, "lb-2", true)
	p.planOnce(context.Background(), p.log, lease, &refused) // whole for now
	fc.mu.Lock()
	defer fc.mu.Unlock()
	var kinds []bool
	for _, s := range fc.submits {
		kinds = append(kinds, s.GetDelta() != nil)
	}
	if want := []bool{false, true, false, false}; !slices.Equal(kinds, want) || len(fc.plans) != 3 {
		t.Fatalf("submissions (delta?) %v and %d plans stored, want %v and 3", kinds, len(fc.plans), want)
	}
}

// A submission the cluster fences ends the planner's turn at once.
func TestPlanOnceStopsWhenFenced(t *testing.T) {
	inv := oneEndpoint(Target{ID: "lb-1", Address: "192.0.2.1", Capacity: 100})
	fc := &fakeCluster{refuse: rejection(codes.FailedPrecondition, "FENCED", "token 7 superseded")}
	p, err := New(Config{ID: "p1", Client: fc, Inventory: inv, Logger: clustertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	setHealth(p, "lb-1", true)
	var refused string
	if fenced := p.planOnce(context.Background(), p.log, &pb.Lease{Name: LeaseName, Holder: "p1", Token: 7}, &refused); !fenced {
		t.Fatal("a fenced submission did not end the planner's turn")
	}
	if got := value(t, p.metrics.refused.WithLabelValues(refusedFenced)); got != 1 {
		t.Errorf("fenced refusals %v, want 1", got)
	}
}

// rejection is a status as the cluster sends it: a code and, in an
// ErrorInfo, the reason.
func rejection(code codes.Code, reason, msg string) error {
	st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: reason, Domain: contract.ErrorDomain})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// A plan stored by someone else with the same records needs no successor.
func TestPlanOnceAcceptsEqualRecordsFromAnotherPlanner(t *testing.T) {
	inv := oneEndpoint(Target{ID: "lb-1", Address: "2001:db8::1", Capacity: 3})
	fc := &fakeCluster{plans: []*pb.Plan{{Generation: 4, PlannerId: "someone-else", Endpoints: []*pb.EndpointPlan{
		{Name: "API.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{{Id: "lb-1", Address: "2001:DB8::1", Weight: 3}}},
	}}}}
	p, err := New(Config{ID: "p1", Client: fc, Inventory: inv, Logger: clustertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	var refused string
	p.planOnce(context.Background(), p.log, &pb.Lease{Name: LeaseName, Holder: "p1", Token: 7}, &refused)
	if _, submits := fc.counts(); submits != 0 {
		t.Errorf("submitted %d plans over an equal one", submits)
	}
}

// Run with a fake: the planner plans as soon as it holds the lease and
// every target has a result, and returns nil when its context ends.
func TestRunWithFake(t *testing.T) {
	fc := &fakeCluster{}
	p, err := New(Config{ID: "p1", Client: fc, Inventory: oneEndpoint(Target{ID: "lb-1", Address: "192.0.2.1", Capacity: 3}),
		Interval: 20 * time.Millisecond, Logger: clustertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	clustertest.WaitFor(t, clustertest.LongWait, "the first plan", func() bool { plans, _ := fc.counts(); return plans == 1 })
	clustertest.WaitFor(t, clustertest.LongWait, "the lease held", p.Leading)
	if err := p.Run(ctx); err == nil {
		t.Error("a second Run of the same planner started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run returned %v after its context ended", err)
	}
	if p.Leading() {
		t.Error("still leading after Run returned")
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	inv := oneEndpoint(Target{ID: "lb-1", Address: "192.0.2.1", Capacity: 3})
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"no id", Config{Client: &fakeCluster{}, Inventory: inv}},
		{"no client", Config{ID: "p", Inventory: inv}},
		{"no inventory", Config{ID: "p", Client: &fakeCluster{}}},
		{"both inventories", Config{ID: "p", Client: &fakeCluster{}, Inventory: inv, InventoryPath: "x.yaml"}},
		{"missing file", Config{ID: "p", Client: &fakeCluster{}, InventoryPath: "/nonexistent/x.yaml"}},
		{"invalid inventory", Config{ID: "p", Client: &fakeCluster{}, Inventory: &Inventory{Zone: "dnsplan.test."}}},
		{"negative rise", Config{ID: "p", Client: &fakeCluster{}, Inventory: inv, Rise: -1}},
		{"negative interval", Config{ID: "p", Client: &fakeCluster{}, Inventory: inv, Interval: -time.Second}},
		{"lease ttl too short", Config{ID: "p", Client: &fakeCluster{}, Inventory: inv, LeaseTTL: time.Millisecond}},
	} {
		if _, err := New(tc.cfg); err == nil {
			t.Errorf("%s: accepted", tc.name)
		}
	}
}

// value reads a counter or gauge (one series).
func value(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 1)
	c.Collect(ch)
	var m dto.Metric
	if err := (<-ch).Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetCounter().GetValue() + m.GetGauge().GetValue()
}

// A new inventory keeps the health of targets whose id and check are
// unchanged, forgets removed ones, and leaves new or re-checked ones
// without a result until probed.
func TestSetInventoryKeepsHealth(t *testing.T) {
	inv := oneEndpoint(
		Target{ID: "kept", Address: "192.0.2.1", Capacity: 1, Check: "tcp://192.0.2.1:80"},
		Target{ID: "rechecked", Address: "192.0.2.2", Capacity: 1, Check: "tcp://192.0.2.2:80"},
		Target{ID: "removed", Address: "192.0.2.3", Capacity: 1, Check: "tcp://192.0.2.3:80"},
	)
	p, err := New(Config{ID: "p1", Client: &fakeCluster{}, Inventory: inv, Logger: clustertest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	setHealth(p, "kept", false)
	setHealth(p, "rechecked", true)
	setHealth(p, "removed", true)
	if !p.Ready() {
		t.Fatal("not ready with every target known")
	}
	next, err := oneEndpoint(
		Target{ID: "kept", Address: "192.0.2.1", Capacity: 5, Check: "tcp://192.0.2.1:80"},
		Target{ID: "rechecked", Address: "192.0.2.2", Capacity: 1, Check: "tcp://192.0.2.2:81"},
		Target{ID: "new", Address: "192.0.2.4", Capacity: 1, Check: "tcp://192.0.2.4:80"},
		Target{ID: "static", Address: "192.0.2.5", Capacity: 1},
	).Validate()
	if err != nil {
		t.Fatal(err)
	}
	p.setInventory(next, true)
	got := p.Health()
	want := map[string]bool{"kept": false, "static": true}
	if len(got) != len(want) || got["kept"] != false || got["static"] != true {
		t.Errorf("health after reload %v, want %v", got, want)
	}
	if p.Ready() {
		t.Error("ready while new targets have no result")
	}
	if v := value(t, p.metrics.reloads); v != 1 {
		t.Errorf("reloads counter %v", v)
	}
	// The same inventory again changes nothing.
	p.setInventory(next, true)
	if v := value(t, p.metrics.reloads); v != 1 {
		t.Errorf("an unchanged inventory counted as a reload")
	}
}
