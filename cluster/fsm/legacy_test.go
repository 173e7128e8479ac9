package fsm

import (
	"testing"
	"time"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The AWS interleaving on the pure state machine. Legacy rules: the slow
// enactor's old plan overwrites the newer one and the age-based clean-up
// then deletes it, leaving the endpoint with no addresses. Fixed rules on
// the same interleaving: the old plan is STALE and the clean-up keeps
// what is applied.
func TestLegacyRulesEmptyTheEndpoint(t *testing.T) {
	const ep = "api.dnsplan.test."
	newPlan := func() *pb.Plan { return plan(weighted(ep, 10, 10)) }

	h := newLegacyHarness(t)
	for range 12 {
		h.mustSubmit(newPlan())
	}
	// Enactor B applies generation 12; the slow enactor A then writes its
	// generation 2 over it; clean-up keeps 5 generations.
	h.do(&pb.LegacyApplyRequest{Generation: 12, Endpoint: ep, EnactorId: "b"})
	if r := h.do(&pb.LegacyApplyRequest{Generation: 2, Endpoint: ep, EnactorId: "a"}); r.Err != nil {
		t.Fatalf("legacy apply of an old plan refused: %v", r.Err)
	}
	if r := h.do(&pb.LegacyCleanupRequest{KeepGenerations: 5}); len(r.Deleted) == 0 {
		t.Fatal("legacy clean-up deleted nothing")
	}
	a := h.s.Applied(ep)
	if a.Generation != 2 || len(a.Targets) != 0 {
		t.Fatalf("legacy endpoint serves generation %d with %d targets, want 2 with none", a.Generation, len(a.Targets))
	}

	h = newHarness(t)
	for range 12 {
		h.mustSubmit(newPlan())
	}
	l := h.mustAcquire("enactor/0", "b", time.Minute)
	h.mustApply(12, "enactor/0", l.Token, "b")
	if r := h.apply(2, "enactor/0", l.Token, "b"); r.Err != nil || r.Endpoints[0].Outcome != pb.Outcome_OUTCOME_STALE {
		t.Fatalf("fixed apply of an old plan = %+v", r)
	}
	h.cleanup(5)
	if a := h.s.Applied(ep); a.Generation != 12 || len(a.Targets) != 2 {
		t.Fatalf("fixed endpoint serves %v", a)
	}
}
