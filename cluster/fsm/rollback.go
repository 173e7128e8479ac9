package fsm

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Rollback. Each endpoint keeps the records it served before its current
// ones, the newest RollbackDepth, whatever happens to the plans they came
// from (clean-up deletes plans; it never deletes these). A rollback is a
// new plan built from them and stored like any other: the rules judge it,
// the enactors apply it, and history is never rewritten.

// RollbackDepth is how many earlier records each endpoint keeps.
const RollbackDepth = 4

// RollbackPlanner is the planner id of a plan a rollback stored.
const RollbackPlanner = "rollback"

// keepPrevious keeps a, what an endpoint served until next replaces it
// (nil: nothing). Records equal to next are not kept: rolling back to them
// would change nothing.
func (s *State) keepPrevious(a *pb.AppliedEndpoint, next *pb.EndpointPlan) {
	if a == nil || (a.GetTtl() == next.GetTtl() && sameWeights(servedWeights(a.GetTargets()), servedWeights(next.GetTargets()))) {
		return
	}
	old := s.previous[a.Endpoint]
	if n := len(old) - (RollbackDepth - 1); n > 0 {
		old = old[n:]
	}
	// A new slice: clones of the state share the old one.
	s.previous[a.Endpoint] = append(slices.Clone(old), proto.CloneOf(a))
}

// Previous returns the records endpoint name served before its current
// ones, oldest first.
func (s *State) Previous(name string) []*pb.AppliedEndpoint {
	return slices.Clone(s.previous[contract.CanonicalName(name)])
}

func validateRollback(r *pb.RollbackPlanRequest) error {
	if len(r.GetReason()) > contract.MaxReasonLength {
		return fmt.Errorf("%w: reason is %d bytes, limit %d", ErrInvalid, len(r.GetReason()), contract.MaxReasonLength)
	}
	return nil
}

// rollbackPlan stores a plan whose records, per applied endpoint, are the
// ones it served at the newest generation not after to (to 0: the ones
// before its current ones). An endpoint with no such records left keeps
// its current ones (Result.Kept).
func (s *State) rollbackPlan(index uint64, r *pb.RollbackPlanRequest) Result {
	ev := s.event(index, kindRollback, RollbackPlanner)
	ev.Reason = r.GetReason()
	if len(s.applied) == 0 {
		return s.reject(ev, fmt.Errorf("%w: no endpoint serves anything to roll back", ErrNotFound))
	}
	plan := &pb.Plan{PlannerId: RollbackPlanner}
	var kept []string
	for _, name := range slices.Sorted(maps.Keys(s.applied)) {
		cur := s.servedRecords(name)
		rec := s.rollbackRecords(name, cur, r.GetToGeneration())
		if rec == nil {
			kept, rec = append(kept, name), cur
		}
		ep := &pb.EndpointPlan{Name: name, Ttl: rec.GetTtl()}
		for _, t := range rec.GetTargets() {
			ep.Targets = append(ep.Targets, &pb.Target{Id: t.Id, Address: t.Address, Weight: t.Weight})
		}
		plan.Endpoints = append(plan.Endpoints, ep)
	}
	if len(kept) == len(plan.Endpoints) {
		return s.reject(ev, fmt.Errorf("%w: no endpoint has records of generation %d or before left", ErrNotFound, r.GetToGeneration()))
	}
	if err := contract.ValidatePlan(plan); err != nil {
		// Kept records passed validation when they were stored; a
		// rollback never stores what a submission could not.
		return s.reject(ev, err)
	}
	if len(kept) > 0 {
		ev.Reason = strings.TrimPrefix(fmt.Sprintf("%s; kept the current records of %s", ev.Reason, strings.Join(kept, ", ")), "; ")
	}
	res := s.storePlan(index, ev, plan, r.GetForce(), !r.GetForce())
	res.Kept = kept
	return res
}

// rollbackRecords picks what endpoint name rolls back to: with to 0, the
// records before cur; otherwise the newest records of a generation not
// after to (cur itself if it is one). nil if none is kept.
func (s *State) rollbackRecords(name string, cur *pb.AppliedEndpoint, to uint64) *pb.AppliedEndpoint {
	prev := s.previous[name]
	if to == 0 {
		if len(prev) == 0 {
			return nil
		}
		return prev[len(prev)-1]
	}
	if cur != nil && cur.GetGeneration() <= to {
		return cur
	}
	for i := len(prev) - 1; i >= 0; i-- {
		if prev[i].GetGeneration() <= to {
			return prev[i]
		}
	}
	return nil
}
