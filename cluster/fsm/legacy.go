package fsm

import (
	"fmt"
	"maps"
	"slices"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// LEGACY: the rules of the design that failed in the AWS outage of October
// 2025, kept apart from the fixed rules so the same cluster, checker and
// tests can show the difference (docs/DESIGN.md section 7). Nodes propose these
// commands only when started with --legacy. Nothing in the fixed design
// calls them, and Apply refuses them (ErrDesign) unless the cluster was
// founded with the legacy design.

// legacyApply points an endpoint at a plan unconditionally: no generation
// check, no lease. It stores only the generation; the records are looked
// up in the plan whenever they are read, so they vanish with the plan.
func (s *State) legacyApply(index uint64, r *pb.LegacyApplyRequest) Result {
	ev := s.event(index, kindLegacyApply, r.GetEnactorId())
	ev.Generation, ev.Endpoint = r.GetGeneration(), contract.CanonicalName(r.GetEndpoint())
	if err := s.requireLegacy(); err != nil {
		return s.reject(ev, err)
	}
	plan := s.plans[r.GetGeneration()]
	if plan == nil {
		return s.reject(ev, fmt.Errorf("%w: generation %d is unknown or deleted", ErrNotFound, r.GetGeneration()))
	}
	if findEndpoint(plan, ev.Endpoint) == nil {
		return s.reject(ev, fmt.Errorf("%w: endpoint %q is not in generation %d", ErrNotFound, ev.Endpoint, r.GetGeneration()))
	}
	prev := s.applied[ev.Endpoint]
	s.applied[ev.Endpoint] = &pb.AppliedEndpoint{
		Endpoint:      ev.Endpoint,
		Generation:    plan.Generation,
		EnactorId:     r.GetEnactorId(),
		AppliedAt:     timestamppb.New(s.now),
		Revision:      index,
		LegacyPointer: true,
	}
	setOutcome(ev, outcomeApplied)
	if prev != nil && prev.Generation > plan.Generation {
		ev.Reason = fmt.Sprintf("overwrote newer generation %d", prev.Generation)
	}
	s.record(ev)
	return Result{Endpoints: []*pb.EndpointResult{{Endpoint: ev.Endpoint, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: plan.Generation}}}
}

// legacyCleanup deletes every plan more than keep generations older than
// the newest, whether or not an endpoint points at it.
func (s *State) legacyCleanup(index uint64, r *pb.LegacyCleanupRequest) Result {
	ev := s.event(index, kindLegacyCleanup, "")
	if err := s.requireLegacy(); err != nil {
		return s.reject(ev, err)
	}
	gens := slices.Sorted(maps.Keys(s.plans))
	if len(gens) == 0 {
		return Result{}
	}
	newest := gens[len(gens)-1]
	var deleted []uint64
	for _, g := range gens {
		if g+uint64(r.GetKeepGenerations()) < newest {
			delete(s.plans, g)
			deleted = append(deleted, g)
		}
	}
	if len(deleted) > 0 {
		setOutcome(ev, outcomeDeleted)
		ev.Reason = fmt.Sprintf("deleted generations %v, more than %d older than %d", deleted, r.GetKeepGenerations(), newest)
		s.record(ev)
	}
	return Result{Deleted: deleted}
}

// resolve returns what a legacy pointer serves: the targets of its plan's
// endpoint, or none if the plan is gone. Fixed records are returned as
// they are.
func (s *State) resolve(a *pb.AppliedEndpoint) *pb.AppliedEndpoint {
	if !a.GetLegacyPointer() {
		return a
	}
	r := proto.Clone(a).(*pb.AppliedEndpoint)
	if plan := s.plans[a.Generation]; plan != nil {
		if ep := findEndpoint(plan, a.Endpoint); ep != nil {
			r.Ttl = ep.Ttl
			r.Targets = ep.Targets
		}
	}
	return r
}
