package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// applyOne applies gen and returns the result of endpoint name.
func (h *harness) applyOne(gen uint64, token uint64, name string) *pb.EndpointResult {
	h.tb.Helper()
	r := h.apply(gen, "enactor", token, "enactor-a")
	if r.Err != nil {
		h.tb.Fatalf("apply %d: %v", gen, r.Err)
	}
	for _, e := range r.Endpoints {
		if e.Endpoint == name {
			return e
		}
	}
	h.tb.Fatalf("apply %d: no result for %s in %v", gen, name, r.Endpoints)
	return nil
}

// Hole 5: the limit compared each submission with the newest submitted
// plan, so 100 -> 50 -> 25, each submitted before the previous one was
// applied and then applied in order, dropped what DNS served by 75% with a
// 50% limit. Judged on what is served, the third apply is refused, for
// that endpoint only; the rest of the apply goes on.
func TestVelocityJudgedOnServed(t *testing.T) {
	h := newHarness(t)
	h.setPolicy(0.5, time.Minute)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	var gens []uint64
	for i, w := range []uint32{100, 50, 25} {
		gens = append(gens, h.mustSubmit(plan(weighted(api, w), weighted(fips, uint32(i+1)))))
	}
	for _, g := range gens[:2] {
		h.advance(time.Second)
		if e := h.applyOne(g, l.Token, api); e.Outcome != pb.Outcome_OUTCOME_APPLIED {
			t.Fatalf("apply %d: %v", g, e)
		}
	}
	h.advance(time.Second)
	e := h.applyOne(gens[2], l.Token, api)
	if e.Outcome != pb.Outcome_OUTCOME_REFUSED || e.Reason != "VELOCITY" || e.AppliedGeneration != gens[1] {
		t.Fatalf("apply of weight 25 after 100 and 50 within the window: %v, want OUTCOME_REFUSED, reason VELOCITY, still generation %d", e, gens[1])
	}
	if !strings.Contains(e.Detail, "keep 25 of the capacity 100") {
		t.Fatalf("detail %q does not give the numbers", e.Detail)
	}
	if a := h.s.Applied(api); a.Generation != gens[1] || a.Targets[0].Weight != 50 {
		t.Fatalf("refused endpoint changed: %v", a)
	}
	if a := h.s.Applied(fips); a.Generation != gens[2] {
		t.Fatalf("the rest of the apply did not go on: fips serves %v", a)
	}
	var refused *pb.HistoryEvent
	for _, ev := range h.s.History(0) {
		if ev.Outcome == "refused" {
			refused = ev
		}
	}
	if refused == nil || refused.Endpoint != api || refused.Generation != gens[2] || !strings.Contains(refused.Reason, "velocity") {
		t.Fatalf("history has no refusal of %s naming velocity: %v", api, refused)
	}
	// The early answer at submit compares with the same served window.
	wantErr(t, "submit of 25 against served 100 and 50", h.submit(plan(weighted(api, 25)), false), ErrVelocity)

	// Once 100 has not been served for a whole window, 25 is half of 50.
	h.advance(time.Minute)
	if e := h.applyOne(gens[2], l.Token, api); e.Outcome != pb.Outcome_OUTCOME_APPLIED {
		t.Fatalf("apply after the window slid: %v", e)
	}
}

// Hole 5: the limit summed weights only, so replacing every address at
// equal weight passed. A replaced address counts as removed capacity.
func TestVelocityCountsReplacedAddresses(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	h.mustApply(h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.10", 60), target("b", "192.0.2.11", 40)))), "enactor", l.Token, "enactor-a")
	h.setPolicy(0.5, time.Minute)
	swapped := plan(endpoint(api, target("a", "192.0.2.20", 60), target("b", "192.0.2.21", 40)))
	wantErr(t, "every address replaced at equal weight", h.submit(swapped, false), ErrVelocity)
	// One of two replaced (40%) is within the limit; the same address
	// under another id or spelling is no change at all.
	g := h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.10", 60), target("c", "192.0.2.21", 40))))
	h.mustApply(g, "enactor", l.Token, "enactor-a")
	g = h.mustSubmit(plan(endpoint(api, target("x", "192.0.2.10", 60), target("y", "192.0.2.21", 40))))
	h.mustApply(g, "enactor", l.Token, "enactor-a")
	// Against both records of the window, the rest is now over the limit.
	wantErr(t, "the other one replaced too", h.submit(swapped, false), ErrVelocity)
}

// The limit is judged against the highest record of the window, not every
// record in it: a target that fails, recovers and then another fails ({b},
// {a, b}, {a}) keeps half the highest capacity, so the last apply goes
// through at 50%, although it drops every address of the first record. The
// same walk from the highest record down by more than the limit is refused.
func TestVelocityJudgedAgainstHighest(t *testing.T) {
	h := newHarness(t)
	h.setPolicy(0.5, time.Minute)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	a, b, c := target("a", "192.0.2.10", 100), target("b", "192.0.2.11", 100), target("c", "192.0.2.12", 100)
	for _, ep := range []*pb.EndpointPlan{endpoint(api, b), endpoint(api, a, b), endpoint(api, a)} {
		h.advance(time.Second)
		g := h.mustSubmit(plan(ep))
		if e := h.applyOne(g, l.Token, api); e.Outcome != pb.Outcome_OUTCOME_APPLIED {
			t.Fatalf("apply of %v within the window: %v, want APPLIED (half of the highest, {a, b}, kept)", ep.Targets, e)
		}
	}
	h.advance(time.Second)
	g := h.mustSubmit(plan(endpoint(api, a, b, c)))
	h.mustApply(g, "enactor", l.Token, "enactor-a")
	h.advance(time.Second)
	wantErr(t, "a third of the highest kept", h.submit(plan(endpoint(api, c)), false), ErrVelocity)
}

// A window that grows covers only what the old window still covered.
// Whether a record older than the window was trimmed depends on when its
// endpoint last changed; without the cut at the change of window, a record
// left untrimmed came back with the larger window and loosened the
// judgement: {b:100} served until t, {c:40} (forced) after it, the window
// set from 1m to 10m more than a minute after t, and {b:100} was then
// judged against the old {b:100} (allowed) instead of {c:40} (refused).
// (The submission is judged by the same rule as the apply.)
func TestGrownWindowDoesNotBringBackRecords(t *testing.T) {
	h := newHarness(t)
	h.setPolicy(0.5, time.Minute)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	b, c := target("b", "192.0.2.11", 100), target("c", "192.0.2.12", 40)
	h.applyOne(h.mustSubmit(plan(endpoint(api, b))), l.Token, api)
	h.advance(time.Second)
	forced := h.submit(plan(endpoint(api, c)), true)
	if forced.Err != nil {
		t.Fatal(forced.Err)
	}
	h.applyOne(forced.Generation, l.Token, api)
	h.advance(2 * time.Minute)
	h.setPolicy(0.5, 10*time.Minute)
	h.advance(time.Second)
	wantErr(t, "{b:100} after {c:40} with the window grown", h.submit(plan(endpoint(api, b)), false), ErrVelocity)
}

// A forced plan passes both rules, at submit and at apply; only the
// cluster marks a plan forced.
func TestForcedPlanOverridesRules(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	h.mustApply(h.mustSubmit(plan(endpoint(api, target("v4", "192.0.2.10", 100)))), "enactor", l.Token, "enactor-a")
	h.setPolicy(0, time.Minute)

	sneaky := plan(endpoint(api, target("v4", "192.0.2.10", 10)))
	sneaky.Forced = true
	wantErr(t, "forced field without force", h.submit(sneaky, false), ErrVelocity)

	r := h.submit(plan(endpoint(api, target("v6", "2001:db8::1", 1))), true)
	wantErr(t, "forced submit", r, nil)
	if !h.s.Plan(r.Generation).GetForced() {
		t.Fatalf("forced plan stored without Plan.forced")
	}
	if e := h.applyOne(r.Generation, l.Token, api); e.Outcome != pb.Outcome_OUTCOME_APPLIED {
		t.Fatalf("forced plan: %v", e)
	}
	if ev := lastEvent(t, h.s); ev.Outcome != "applied" || ev.Reason != "forced" {
		t.Fatalf("forced apply not marked in history: %v", ev)
	}
}

// Hole 6: moving all weight from A to AAAA emptied the A answers of an
// applied endpoint. I2 holds per family.
func TestFamilyNotEmptied(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	both := plan(endpoint(api, target("v4", "192.0.2.10", 100), target("v6", "2001:db8::1", 100)))
	h.mustApply(h.mustSubmit(both), "enactor", l.Token, "enactor-a")

	allV6 := func() *pb.Plan {
		return plan(endpoint(api, target("v4", "192.0.2.10", 0), target("v6", "2001:db8::1", 200)))
	}
	r := h.submit(allV6(), false)
	wantErr(t, "A emptied at submit", r, ErrFamily)
	if Reason(r.Err) != contract.ReasonFamily {
		t.Fatalf("reason %q", Reason(r.Err))
	}
	// Submitted before the A targets went away from what is served (here:
	// nothing served yet on fips), and applied later: refused at apply.
	h2 := newHarness(t)
	l2 := h2.mustAcquire("enactor", "enactor-a", time.Hour)
	g1 := h2.mustSubmit(both)
	g2 := h2.mustSubmit(allV6())
	h2.mustApply(g1, "enactor", l2.Token, "enactor-a")
	e := h2.applyOne(g2, l2.Token, api)
	if e.Outcome != pb.Outcome_OUTCOME_REFUSED || e.Reason != "FAMILY" || !strings.Contains(e.Detail, "IPv4") {
		t.Fatalf("moving all weight from A to AAAA: %v, want OUTCOME_REFUSED, reason FAMILY", e)
	}
	// Adding a family is fine; forced, a family may go.
	h.mustApply(h.mustSubmit(plan(endpoint(api, target("v4", "192.0.2.10", 100), target("v6", "2001:db8::1", 100), target("v6b", "2001:db8::2", 1)))), "enactor", l.Token, "enactor-a")
	r = h.submit(allV6(), true)
	wantErr(t, "forced", r, nil)
	if e := h.applyOne(r.Generation, l.Token, api); e.Outcome != pb.Outcome_OUTCOME_APPLIED {
		t.Fatalf("forced family change: %v", e)
	}
}

// Hole 11: a retried apply whose first attempt succeeded came back STALE.
// The same generation, token and enactor are answered as applied, and the
// retry changes nothing.
func TestApplyRetry(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	g := h.mustSubmit(plan(weighted(api, 100)))
	h.mustApply(g, "enactor", l.Token, "enactor-a")
	fp := fingerprint(t, h.s)
	h.advance(time.Second)
	r := h.apply(g, "enactor", l.Token, "enactor-a")
	want := &pb.EndpointResult{Endpoint: api, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: g}
	if r.Err != nil || len(r.Endpoints) != 1 || !proto.Equal(r.Endpoints[0], want) {
		t.Fatalf("retry of a successful apply: %+v, want %v", r, want)
	}
	if !bytes.Equal(fp, fingerprint(t, h.s)) {
		t.Fatalf("the retry changed the state")
	}
	// Another enactor, or the same one under a newer token, is stale.
	l2 := h.mustAcquire("enactor", "enactor-a", time.Hour)
	if e := h.applyOne(g, l2.Token, api); e.Outcome != pb.Outcome_OUTCOME_STALE {
		t.Fatalf("same generation under a newer token: %v", e)
	}
}

// Hole 13: a fixed cluster ran legacy commands when a --legacy member led.
// The design is the cluster's: Apply refuses legacy commands unless the
// cluster was founded legacy, and a state with no config is fixed.
func TestDesignRefusesLegacyCommands(t *testing.T) {
	for _, tc := range []struct {
		name string
		h    func(testing.TB) *harness
		want error
	}{
		{"never founded", func(tb testing.TB) *harness { return &harness{tb: tb, s: New(), stamp: t0} }, ErrDesign},
		{"fixed", newHarness, ErrDesign},
		{"legacy", newLegacyHarness, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h(t)
			g := h.mustSubmit(plan(weighted(api, 100)))
			h.mustSubmit(plan(weighted(api, 100)))
			r := h.do(&pb.LegacyApplyRequest{Generation: g, Endpoint: api, EnactorId: "rogue"})
			wantErr(t, "legacy apply", r, tc.want)
			wantErr(t, "legacy cleanup", h.do(&pb.LegacyCleanupRequest{KeepGenerations: 1}), tc.want)
			if tc.want == nil {
				return
			}
			if Reason(r.Err) != contract.ReasonDesign || r.Endpoints != nil {
				t.Fatalf("legacy apply on a fixed cluster = %+v", r)
			}
			if h.s.Applied(api) != nil || h.s.NumPlans() != 2 {
				t.Fatalf("refused legacy commands changed the state: %v", h.s)
			}
			if ev := lastEvent(t, h.s); ev.Outcome != "rejected" || ev.Kind != "legacy_cleanup" {
				t.Fatalf("history %v", ev)
			}
		})
	}
}

// The policy is founded once, changed only in its velocity settings, and
// carried by snapshots together with the served windows.
func TestFoundAndSetConfig(t *testing.T) {
	h := &harness{tb: t, s: New(), stamp: t0}
	if h.s.Config() != nil || h.s.Policy().GetDesign() != pb.Design_DESIGN_FIXED || h.s.Policy().GetMaxCapacityDrop() != DefaultMaxCapacityDrop {
		t.Fatalf("unfounded policy %v", h.s.Policy())
	}
	drop := 0.2
	wantErr(t, "set before founding", h.do(&pb.SetConfigRequest{MaxCapacityDrop: &drop}), ErrNotFounded)
	wantErr(t, "invalid founding", h.do(&pb.ClusterConfig{Design: pb.Design_DESIGN_UNSPECIFIED, MaxCapacityDrop: 0.5, VelocityWindow: durationpb.New(time.Minute)}), ErrInvalid)
	founding := &pb.ClusterConfig{Design: pb.Design_DESIGN_LEGACY, MaxCapacityDrop: 0, VelocityWindow: durationpb.New(time.Minute)}
	if r := h.do(founding); r.Err != nil || !proto.Equal(r.Config, founding) {
		t.Fatalf("founding = %+v", r)
	}
	fp := fingerprint(t, h.s)
	second := &pb.ClusterConfig{Design: pb.Design_DESIGN_FIXED, MaxCapacityDrop: 1, VelocityWindow: durationpb.New(time.Hour)}
	if r := h.do(second); r.Err != nil || !proto.Equal(r.Config, founding) {
		t.Fatalf("second founding = %+v, want the first config", r)
	}
	if !bytes.Equal(fp, fingerprint(t, h.s)) {
		t.Fatalf("a second founding changed the state")
	}
	// 0 is a limit, not "unset": no drop without force.
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	h.mustApply(h.mustSubmit(plan(weighted(api, 100))), "enactor", l.Token, "enactor-a")
	wantErr(t, "drop of 1% with limit 0", h.submit(plan(weighted(api, 99)), false), ErrVelocity)

	for _, bad := range []*pb.SetConfigRequest{
		{},
		{MaxCapacityDrop: proto.Float64(-0.01)},
		{MaxCapacityDrop: proto.Float64(1.01)},
		{MaxCapacityDrop: proto.Float64(math.NaN())},
		{VelocityWindow: durationpb.New(0)},
		{VelocityWindow: durationpb.New(-time.Second)},
		{VelocityWindow: durationpb.New(MaxVelocityWindow + time.Second)},
	} {
		wantErr(t, "set "+bad.String(), h.do(bad), ErrInvalid)
	}
	r := h.do(&pb.SetConfigRequest{MaxCapacityDrop: &drop})
	want := &pb.ClusterConfig{Design: pb.Design_DESIGN_LEGACY, MaxCapacityDrop: 0.2, VelocityWindow: durationpb.New(time.Minute)}
	if r.Err != nil || !proto.Equal(r.Config, want) || !proto.Equal(h.s.Config(), want) {
		t.Fatalf("set drop = %+v, want %v", r, want)
	}
	r = h.do(&pb.SetConfigRequest{VelocityWindow: durationpb.New(5 * time.Second)})
	want.VelocityWindow = durationpb.New(5 * time.Second)
	if r.Err != nil || !proto.Equal(h.s.Config(), want) {
		t.Fatalf("set window = %+v, want %v", r, want)
	}
	if ev := lastEvent(t, h.s); ev.Kind != "config" || ev.Outcome != "changed" {
		t.Fatalf("history %v", ev)
	}

	s, err := Restore(marshal(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(s.Config(), want) || !bytes.Equal(marshal(t, s), marshal(t, h.s)) {
		t.Fatalf("snapshot lost the config or the served windows: %v", s.Config())
	}
	h.s = s
	wantErr(t, "drop of 21% after restore", h.submit(plan(weighted(api, 79)), false), ErrVelocity)
}

func TestValidateConfig(t *testing.T) {
	ok := DefaultConfig()
	if err := ValidateConfig(ok); err != nil {
		t.Fatalf("default config: %v", err)
	}
	for name, c := range map[string]*pb.ClusterConfig{
		"nil":         nil,
		"no design":   {MaxCapacityDrop: 0.5, VelocityWindow: durationpb.New(time.Minute)},
		"NaN drop":    {Design: pb.Design_DESIGN_FIXED, MaxCapacityDrop: math.NaN(), VelocityWindow: durationpb.New(time.Minute)},
		"no window":   {Design: pb.Design_DESIGN_FIXED, MaxCapacityDrop: 0.5},
		"design 7":    {Design: 7, MaxCapacityDrop: 0.5, VelocityWindow: durationpb.New(time.Minute)},
		"huge window": {Design: pb.Design_DESIGN_FIXED, MaxCapacityDrop: 0.5, VelocityWindow: durationpb.New(MaxVelocityWindow + 1)},
	} {
		if err := ValidateConfig(c); Reason(err) != contract.ReasonInvalid {
			t.Errorf("%s: %v, want invalid", name, err)
		}
	}
}

// A run of small changes cannot push the highest record out of the
// count-bounded window and then step capacity down past the limit: 400,
// then MaxServedRecords+ alternating records of 201 and 200 (each a drop
// under 50% of 400), then 101 is 75% below the 400 served within the
// window.
func TestServedWindowKeepsTheHighest(t *testing.T) {
	h := newHarness(t)
	h.setPolicy(0.5, time.Minute)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	h.mustApply(h.mustSubmit(plan(weighted(api, 400))), "enactor", l.Token, "enactor-a")
	for i := range MaxServedRecords + 2 {
		h.advance(10 * time.Millisecond)
		h.mustApply(h.mustSubmit(plan(weighted(api, uint32(200+i%2)))), "enactor", l.Token, "enactor-a")
	}
	if r := h.submit(plan(weighted(api, 101)), false); Reason(r.Err) != contract.ReasonVelocity {
		t.Fatalf("a drop to 101 within the window of 400: %v, want refused by velocity", r.Err)
	}
}

// The served window is bounded in time and in count, and an unchanged
// record adds nothing.
func TestServedWindowBounded(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	for i := range 3 * MaxServedRecords {
		h.advance(10 * time.Millisecond)
		h.mustApply(h.mustSubmit(plan(weighted(api, uint32(100+i)))), "enactor", l.Token, "enactor-a")
	}
	if n := len(h.s.served[api].Records); n != MaxServedRecords {
		t.Fatalf("%d records kept, want %d", n, MaxServedRecords)
	}
	h.advance(30 * time.Minute)
	l = h.mustAcquire("enactor", "enactor-a", time.Hour)
	h.mustApply(h.mustSubmit(plan(weighted(api, 500))), "enactor", l.Token, "enactor-a")
	h.mustApply(h.mustSubmit(plan(weighted(api, 500))), "enactor", l.Token, "enactor-a")
	if n := len(h.s.served[api].Records); n != 2 {
		t.Fatalf("%d records after half an hour, want two: the one served until this apply and the current", n)
	}
	var snap statev1.Snapshot
	if err := proto.Unmarshal(marshal(t, h.s), &snap); err != nil || len(snap.Served) != 1 {
		t.Fatalf("snapshot served windows %v, %v", snap.Served, err)
	}
}

// An endpoint's minimum healthy: a plan below it is refused at submit and
// at apply unless forced; a preview says so.
func TestMinHealthy(t *testing.T) {
	h := newHarness(t)
	four := func(up int) *pb.EndpointPlan {
		ep := endpoint(api)
		for i := range 4 {
			w := uint32(0)
			if i < up {
				w = 1
			}
			ep.Targets = append(ep.Targets, target(fmt.Sprintf("t%d", i), fmt.Sprintf("192.0.2.%d", i+1), w))
		}
		ep.MinHealthyTargets = 3
		return ep
	}
	if r := h.submit(plan(four(2)), false); !errors.Is(r.Err, ErrMinHealthy) || Reason(r.Err) != contract.ReasonMinHealthy {
		t.Fatalf("two of four, minimum three: %v, want MIN_HEALTHY", r.Err)
	}
	h.mustSubmit(plan(four(3)))
	forced := h.submit(plan(four(1)), true)
	if forced.Err != nil {
		t.Fatalf("forced: %v", forced.Err)
	}
	checks := h.s.Judge(four(2))
	if checks[0].Rule != "min_healthy" || checks[0].Ok || checks[0].ReasonCode != "MIN_HEALTHY" {
		t.Errorf("preview of two of four: %v", checks)
	}
	// The fraction rounds up, and the larger minimum applies.
	ep := four(4)
	ep.MinHealthyTargets, ep.MinHealthyFraction = 1, 0.5
	ep.Targets[3].Weight, ep.Targets[2].Weight = 0, 0
	if err := h.s.checkMinHealthy(ep); err != nil {
		t.Errorf("two of four, half: %v", err)
	}
	ep.MinHealthyFraction = 0.51
	if err := h.s.checkMinHealthy(ep); err == nil {
		t.Error("two of four, just over half: accepted")
	}
	if err := Validate(&statev1.SubmitPlan{Plan: plan(&pb.EndpointPlan{Name: api, Ttl: 30, MinHealthyTargets: 2,
		Targets: []*pb.Target{target("a", "192.0.2.1", 1)}})}); !errors.Is(err, ErrInvalid) {
		t.Errorf("a minimum above the endpoint's targets: %v, want INVALID", err)
	}
}
