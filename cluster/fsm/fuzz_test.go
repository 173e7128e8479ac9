package fsm

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Run with: go test -run '^$' -fuzz '^FuzzValidatePlan$' -fuzztime 10s ./cluster/fsm
// and:      go test -run '^$' -fuzz '^FuzzDecodeCommand$' -fuzztime 10s ./cluster/fsm

func mustMarshal(tb testing.TB, m proto.Message) []byte {
	tb.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// FuzzValidatePlan feeds arbitrary bytes, read as a Plan, to ValidatePlan.
// It must not panic nor change its input; a refusal wraps ErrInvalid; and
// a plan it accepts must be stored by SubmitPlan in a fresh state, apply to
// every endpoint, and serve at least one address of weight > 0 on each.
func FuzzValidatePlan(f *testing.F) {
	for _, p := range []*pb.Plan{
		validPlan(),
		plan(weighted("API.DnsPlan.Test.", 0, 5), weighted("_srv.x.", 1)),
		plan(weighted(api, 0, 0)),
		plan(endpoint(api, target("a", "::ffff:192.0.2.1", 1))),
		plan(endpoint(api, target("a", "fe80::1%eth0", 1))),
		plan(weighted(api, 1), weighted("API.DNSPLAN.TEST.", 1)),
		plan(endpoint(api, target("a", "192.0.2.1", 1), target("a", "192.0.2.2", 1))),
		{PlannerId: "p", Endpoints: []*pb.EndpointPlan{{Name: api, Ttl: 0, Targets: []*pb.Target{target("a", "192.0.2.1", 1)}}}},
		{},
	} {
		f.Add(mustMarshal(f, p))
	}
	f.Add([]byte{0x1a, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		p := &pb.Plan{}
		if err := proto.Unmarshal(data, p); err != nil {
			return
		}
		before := proto.Clone(p)
		err := contract.ValidatePlan(p)
		if !proto.Equal(p, before) {
			t.Fatalf("ValidatePlan changed its input")
		}
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("ValidatePlan = %v, does not wrap ErrInvalid", err)
			}
			return
		}

		h := newHarness(t)
		r := h.submit(p, true)
		if r.Err != nil || r.Generation != 1 {
			t.Fatalf("valid plan refused by SubmitPlan: %+v", r)
		}
		stored := h.s.Plan(1)
		if len(stored.Endpoints) != len(p.Endpoints) {
			t.Fatalf("stored %d endpoints of %d", len(stored.Endpoints), len(p.Endpoints))
		}
		for i, ep := range stored.Endpoints {
			if ep.Name != strings.ToLower(p.Endpoints[i].Name) {
				t.Fatalf("stored name %q for %q", ep.Name, p.Endpoints[i].Name)
			}
		}
		if err := contract.ValidatePlan(stored); err != nil {
			t.Fatalf("stored plan fails validation: %v", err)
		}
		// The same plan again is no capacity drop at all.
		if r := h.submit(p, false); r.Err != nil {
			t.Fatalf("resubmitting the same plan: %v", r.Err)
		}
		l := h.mustAcquire("enactor", "enactor-a", time.Minute)
		r = h.apply(1, "enactor", l.Token, "enactor-a")
		if r.Err != nil || len(r.Endpoints) != len(p.Endpoints) {
			t.Fatalf("apply of a valid plan: %+v", r)
		}
		for _, e := range r.Endpoints {
			a := h.s.Applied(e.Endpoint)
			if e.Outcome != pb.Outcome_OUTCOME_APPLIED || a == nil ||
				!slices.ContainsFunc(a.Targets, func(t *pb.Target) bool { return t.Weight > 0 }) {
				t.Fatalf("endpoint %s: %v, applied %v", e.Endpoint, e.Outcome, a)
			}
		}
		b := marshal(t, h.s)
		s, err := Restore(b)
		if err != nil || !bytes.Equal(b, marshal(t, s)) {
			t.Fatalf("round trip: %v", err)
		}
	})
}

// fuzzBase is a state with something of everything, so a fuzzed command
// meets plans, applied endpoints and a live lease: generations 1-3 (2
// applied to api), lease "enactor" held by enactor-a with token 4 until
// t0+1h, lease "enactor-fips" held by enactor-b with token 5.
func fuzzBase(tb testing.TB) *harness {
	h := newHarness(tb)
	h.mustSubmit(plan(weighted(api, 10, 10), weighted(v6, 5)))
	h.mustSubmit(plan(weighted(api, 10, 5), weighted(fips, 5)))
	h.mustSubmit(plan(weighted(api, 10, 5), weighted(v6, 5), weighted(fips, 5)))
	h.mustAcquire("enactor", "enactor-a", time.Hour)
	h.mustAcquire("enactor-fips", "enactor-b", time.Minute)
	h.mustApply(2, "enactor", 4, "enactor-a", api)
	h.do(&statev1.SetMember{Id: "n1", RaftAddr: "r1", GrpcAddr: "g1"})
	return h
}

// FuzzDecodeCommand feeds arbitrary bytes to Decode. It must not panic; a
// refusal wraps ErrUndecodable; whatever decodes must re-encode to bytes
// that decode to an equal command; and applying it, to a fresh state or to
// one with plans, leases and applied endpoints, must not panic (Apply may
// panic only for a type with no rule, which cannot decode) nor break the
// invariants, nor quote its input in a refusal, nor overfill the history.
func FuzzDecodeCommand(f *testing.F) {
	stamp := t0.Add(time.Minute)
	seeds := sampleCommands()
	seeds = append(seeds,
		Command{Stamp: stamp, Payload: &pb.ApplyPlanRequest{Generation: 3, LeaseName: "enactor", LeaseToken: 4, EnactorId: "enactor-a"}},
		Command{Stamp: stamp, Payload: &pb.ApplyPlanRequest{Generation: 1, Endpoints: []string{api}, LeaseName: "enactor", LeaseToken: 4, EnactorId: "enactor-a"}},
		Command{Stamp: stamp, Payload: &pb.RenewLeaseRequest{Name: "enactor-fips", Holder: "enactor-b", Token: 5}},
		Command{Stamp: stamp, Payload: &pb.ReleaseLeaseRequest{Name: "enactor", Holder: "enactor-a", Token: 4}},
		Command{Stamp: t0.Add(2 * time.Hour), Payload: &pb.AcquireLeaseRequest{Name: "enactor", Holder: "enactor-c", Ttl: durationpb.New(time.Second)}},
		Command{Stamp: stamp, Payload: &pb.CleanupPlansRequest{KeepLast: 1}},
		Command{Stamp: stamp, Payload: &statev1.SubmitPlan{Plan: plan(weighted(api, 1))}},

		Command{Stamp: stamp, Payload: &pb.RenewLeaseRequest{Name: "enactor", Holder: strings.Repeat("h", contract.MaxIDLength+1), Token: 4}},
		Command{Stamp: stamp, Payload: &pb.SetFreezeRequest{Frozen: true, Reason: strings.Repeat("r", contract.MaxReasonLength+1)}},
		Command{Stamp: stamp, Payload: &statev1.SetMember{Id: "n2", RaftAddr: strings.Repeat("a", contract.MaxAddressLength+1), GrpcAddr: "g"}},
	)
	for _, c := range seeds {
		b, err := c.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrUndecodable) {
				t.Fatalf("Decode error %v does not wrap ErrUndecodable", err)
			}
			return
		}
		b, err := c.Encode()
		if err != nil {
			t.Fatalf("re-encoding a decoded %s: %v", c.Type(), err)
		}
		c2, err := Decode(b)
		if err != nil {
			t.Fatalf("decoding a re-encoded %s: %v", c.Type(), err)
		}
		if c2.Type() != c.Type() || !c2.Stamp.Equal(c.Stamp) || !proto.Equal(c2.Payload, c.Payload) {
			t.Fatalf("Decode(Encode(c)) = %+v, want %+v", c2, c)
		}
		if b2, err := c2.Encode(); err != nil || !bytes.Equal(b2, b) {
			t.Fatalf("encoding is not stable: %v", err)
		}

		New().Apply(1, c)

		h := fuzzBase(t)
		pre := capture(h.s)
		res := h.s.Apply(h.index+1, c2)
		if res.Err != nil && len(res.Err.Error()) > maxErrorText {
			t.Fatalf("a %s refusal is %d bytes long: it quotes its input", c2.Type(), len(res.Err.Error()))
		}
		if n := historyBytes(h.s); n > HistoryMaxBytes {
			t.Fatalf("history holds %d bytes, limit %d", n, HistoryMaxBytes)
		}
		for name, g := range pre.applied {
			if a := h.s.Applied(name); a == nil || a.Generation < g {
				t.Fatalf("I1: %s went from generation %d to %v", name, g, a)
			}
		}
		for _, a := range h.s.AppliedAll() {
			if !slices.ContainsFunc(a.Targets, func(t *pb.Target) bool { return t.Weight > 0 }) {
				t.Fatalf("I2: %s serves no address", a.Endpoint)
			}
			if h.s.Plan(a.Generation) == nil {
				t.Fatalf("I3: %s serves deleted generation %d", a.Endpoint, a.Generation)
			}
		}
		if anyApplied(res) {
			r := c2.Payload.(*pb.ApplyPlanRequest)
			holds := func(name, holder string, token uint64, ttl time.Duration) bool {
				return r.LeaseName == name && r.EnactorId == holder && r.LeaseToken == token && h.s.Now().Before(t0.Add(ttl))
			}
			if !holds("enactor", "enactor-a", 4, time.Hour) && !holds("enactor-fips", "enactor-b", 5, time.Minute) {
				t.Fatalf("I4: apply accepted at %v with %v", c2.Stamp, r)
			}
		}
		for _, p := range h.s.Plans() {
			if err := contract.ValidatePlan(p); err != nil {
				t.Fatalf("I6: stored generation %d: %v", p.Generation, err)
			}
		}
		snap := marshal(t, h.s)
		s, err := Restore(snap)
		if err != nil || !bytes.Equal(snap, marshal(t, s)) {
			t.Fatalf("round trip: %v", err)
		}
	})
}
