package fsm

import (
	"fmt"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Freeze on doubt. AWS's lesson from the outage was to turn what should
// never happen into a frozen state rather than act on it. The cluster
// freezes itself, in the same command that sees it, with the reason in
// the history: a submitted plan that changes more than max_plan_change of
// all endpoints at once (a planner reading an empty or broken source
// would rewrite everything) is stored for review (ctl diff) and held:
// never applied, even after the freeze is lifted. The operator stores
// what is served again (ctl rollback --to), or, having reviewed the plan,
// submits it again with force; then unfreezes.

// MinEndpointsForDoubt is the fewest endpoints a cluster serves before a
// plan's share of changed endpoints counts: with three endpoints, one
// change is a third of them (octoDNS waits for ten records too).
const MinEndpointsForDoubt = 10

// DoubtPlan says why submitting plan now would freeze the cluster ("" if
// it would not): a preview of the rule below.
func (s *State) DoubtPlan(plan *pb.Plan) string { return s.doubtPlan(plan) }

// doubtPlan says why plan is doubtful ("" if it is not): it changes more
// than the policy's max_plan_change of the endpoints served or planned.
// An endpoint changes when what it would serve (addresses, weights, TTL)
// differs from what it serves.
func (s *State) doubtPlan(plan *pb.Plan) string {
	limit := s.Policy().MaxPlanChange
	if !s.Active(LogDoubt) || limit == nil || *limit >= 1 || len(s.applied) < MinEndpointsForDoubt {
		return ""
	}
	all := len(s.applied)
	changed := 0
	for _, ep := range plan.GetEndpoints() {
		name := contract.CanonicalName(ep.GetName())
		cur := s.servedRecords(name)
		if cur == nil {
			all++
		}
		if cur == nil || cur.GetTtl() != ep.GetTtl() || !sameWeights(servedWeights(cur.GetTargets()), servedWeights(ep.GetTargets())) {
			changed++
		}
	}
	if share := float64(changed) / float64(all); share > *limit {
		return fmt.Sprintf("doubt: a plan of planner %q changes %d of %d endpoints (%.0f%%), more than max_plan_change %g; the plan is held, never applied: review it with ctl diff; to keep what is served, ctl rollback --to the generation served (ctl applied); to use it, submit it again with --force; then ctl unfreeze",
			plan.GetPlannerId(), changed, all, 100*share, *limit)
	}
	return ""
}

// freezeOnDoubt freezes the cluster by itself, recording why.
func (s *State) freezeOnDoubt(index uint64, why string) {
	ev := s.event(index, kindFreeze, "cluster")
	s.frozen, s.freezeReason = true, why
	setOutcome(ev, outcomeFrozen)
	ev.Reason = why
	s.record(ev)
}
