package fsm

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// t0 is the first stamp every test starts from: the morning of the AWS
// event. Tests never read a clock; they pass stamps.
var t0 = time.Date(2025, 10, 20, 6, 48, 0, 0, time.UTC)

// newActive is a new state running every rule of this version, as a
// cluster of this version runs once its leader activated it.
func newActive() *State {
	s := New()
	s.logVersion = LogVersion
	return s
}

// harness drives a State the way Raft would: consecutive log indexes, a
// leader stamp that the test moves by hand.
type harness struct {
	tb    testing.TB
	s     *State
	index uint64
	stamp time.Time
	// caller is the caller the commands carry.
	caller string
}

// newHarness starts from a fixed cluster founded with no velocity limit,
// so that tests of other rules can change weights freely; tests of the
// limit set it with setPolicy.
func newHarness(tb testing.TB) *harness {
	return newFoundedHarness(tb, pb.Design_DESIGN_FIXED)
}

// newLegacyHarness starts from a cluster founded with the legacy design.
func newLegacyHarness(tb testing.TB) *harness {
	return newFoundedHarness(tb, pb.Design_DESIGN_LEGACY)
}

// newFoundedHarness founds the state as if before the test's first log
// index (no event, no index used), so that tests count indexes and events
// from their own commands. Founding itself is tested through Apply.
func newFoundedHarness(tb testing.TB, d pb.Design) *harness {
	h := &harness{tb: tb, s: newActive(), stamp: t0}
	h.s.config = &pb.ClusterConfig{Design: d, MaxCapacityDrop: 1, VelocityWindow: durationpb.New(time.Minute)}
	return h
}

// setPolicy changes the velocity limit through the SetConfig command.
func (h *harness) setPolicy(maxDrop float64, window time.Duration) {
	h.tb.Helper()
	if r := h.do(&pb.SetConfigRequest{MaxCapacityDrop: &maxDrop, VelocityWindow: durationpb.New(window)}); r.Err != nil {
		h.tb.Fatalf("set config: %v", r.Err)
	}
}

func (h *harness) do(p proto.Message) Result {
	h.index++
	return h.s.Apply(h.index, Command{Stamp: h.stamp, Payload: p, Caller: h.caller})
}

// advance moves the leader's stamp; a negative d models a leader whose
// clock is behind, which the state machine must ignore.
func (h *harness) advance(d time.Duration) { h.stamp = h.stamp.Add(d) }

func (h *harness) submit(p *pb.Plan, force bool) Result {
	return h.do(&statev1.SubmitPlan{Plan: p, Force: force})
}

// mustSubmit submits without force and fails the test on refusal.
func (h *harness) mustSubmit(p *pb.Plan) uint64 {
	h.tb.Helper()
	r := h.submit(p, false)
	if r.Err != nil {
		h.tb.Fatalf("submit: %v", r.Err)
	}
	return r.Generation
}

func (h *harness) acquire(name, holder string, ttl time.Duration) Result {
	return h.do(&pb.AcquireLeaseRequest{Name: name, Holder: holder, Ttl: durationpb.New(ttl)})
}

func (h *harness) mustAcquire(name, holder string, ttl time.Duration) *pb.Lease {
	h.tb.Helper()
	r := h.acquire(name, holder, ttl)
	if r.Err != nil {
		h.tb.Fatalf("acquire %s by %s: %v", name, holder, r.Err)
	}
	return r.Lease
}

func (h *harness) renew(name, holder string, token uint64) Result {
	return h.do(&pb.RenewLeaseRequest{Name: name, Holder: holder, Token: token})
}

func (h *harness) release(name, holder string, token uint64) Result {
	return h.do(&pb.ReleaseLeaseRequest{Name: name, Holder: holder, Token: token})
}

func (h *harness) apply(gen uint64, lease string, token uint64, enactor string, endpoints ...string) Result {
	return h.do(&pb.ApplyPlanRequest{Generation: gen, Endpoints: endpoints, LeaseName: lease, LeaseToken: token, EnactorId: enactor})
}

// mustApply applies and fails the test unless every endpoint was applied.
func (h *harness) mustApply(gen uint64, lease string, token uint64, enactor string, endpoints ...string) {
	h.tb.Helper()
	r := h.apply(gen, lease, token, enactor, endpoints...)
	if r.Err != nil {
		h.tb.Fatalf("apply %d: %v", gen, r.Err)
	}
	for _, e := range r.Endpoints {
		if e.Outcome != pb.Outcome_OUTCOME_APPLIED {
			h.tb.Fatalf("apply %d: endpoint %s: %v", gen, e.Endpoint, e.Outcome)
		}
	}
}

func (h *harness) cleanup(keep uint32) Result {
	return h.do(&pb.CleanupPlansRequest{KeepLast: keep})
}

func (h *harness) freeze(on bool, reason string) Result {
	return h.do(&pb.SetFreezeRequest{Frozen: on, Reason: reason})
}

// marshal fails the test if the state cannot be encoded.
func marshal(tb testing.TB, s *State) []byte {
	tb.Helper()
	b, err := s.Marshal()
	if err != nil {
		tb.Fatalf("marshal: %v", err)
	}
	return b
}

func target(id, addr string, w uint32) *pb.Target {
	return &pb.Target{Id: id, Address: addr, Weight: w}
}

func endpoint(name string, targets ...*pb.Target) *pb.EndpointPlan {
	return &pb.EndpointPlan{Name: name, Ttl: 30, Targets: targets}
}

// weighted is an endpoint with one IPv4 target per weight.
func weighted(name string, weights ...uint32) *pb.EndpointPlan {
	ep := &pb.EndpointPlan{Name: name, Ttl: 30}
	for i, w := range weights {
		ep.Targets = append(ep.Targets, target(fmt.Sprintf("lb-%d", i), fmt.Sprintf("192.0.2.%d", 10+i), w))
	}
	return ep
}

func plan(eps ...*pb.EndpointPlan) *pb.Plan {
	return &pb.Plan{PlannerId: "planner-1", Endpoints: eps}
}

// validPlan is a small plan every rule accepts.
func validPlan() *pb.Plan {
	return plan(
		endpoint("api.dnsplan.test.", target("lb-a", "192.0.2.10", 100), target("lb-b", "192.0.2.11", 0)),
		endpoint("v6.dnsplan.test.", target("lb-c", "2001:db8::1", 10)),
	)
}
