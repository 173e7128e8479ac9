package fsm

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
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

// DoubtPlan says why submitting plan now, unforced, would freeze the
// cluster ("" if it would not), changing nothing: a plan that changes too
// many endpoints (doubtPlan), or the velocity refusal of its first
// refused endpoint that would reach max_velocity_refusals.
func (s *State) DoubtPlan(plan *pb.Plan) string {
	if why := s.doubtPlan(plan); why != "" {
		return why
	}
	for _, ep := range plan.GetEndpoints() {
		ep = &pb.EndpointPlan{Name: contract.CanonicalName(ep.GetName()), Ttl: ep.GetTtl(), Targets: ep.GetTargets(),
			MinHealthyTargets: ep.GetMinHealthyTargets(), MinHealthyFraction: ep.GetMinHealthyFraction()}
		if err := s.checkEndpointRules(ep); err != nil {
			_, why := s.velocityDoubt(ep.GetName(), ep.GetTargets(), err)
			return why // the submission stops at its first refused endpoint
		}
	}
	return ""
}

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

// noteVelocityRefusal counts a change of endpoint name the velocity
// limit refused (err; other refusals are not counted) and, when it has
// refused max_velocity_refusals different changes of it within the
// velocity window, freezes the cluster: a source that keeps asking for
// new ways to take capacity away faster than allowed is in doubt. The
// same change asked again (a planner retrying every round) counts once.
// It says why it froze ("" if it did not). After a freeze the count
// starts over, so an unfreeze is not undone by old refusals.
func (s *State) noteVelocityRefusal(index uint64, name string, targets []*pb.Target, err error) string {
	kept, why := s.velocityDoubt(name, targets, err)
	switch {
	case kept == nil:
	case why == "":
		s.velocityRefusals[name] = kept
	default:
		delete(s.velocityRefusals, name)
		s.freezeOnDoubt(index, why)
	}
	return why
}

// velocityDoubt is what counting a refusal (err) of endpoint name's change
// to targets would do, changing nothing: the refusals to keep (nil: the
// refusal does not count), and why the cluster would freeze ("" if not).
func (s *State) velocityDoubt(name string, targets []*pb.Target, err error) ([]*statev1.VelocityRefusal, string) {
	limit := s.Policy().GetMaxVelocityRefusals()
	if !errors.Is(err, ErrVelocity) || !s.Active(LogVelocityDoubt) || limit == 0 || s.frozen {
		// Frozen, refusals are what an operator is already looking at;
		// counting them would freeze again at the first after an unfreeze.
		return nil, ""
	}
	asked := askedKey(targets)
	kept := []*statev1.VelocityRefusal{}
	cut := s.now.Add(-s.window()).UnixNano()
	for _, r := range s.velocityRefusals[name] {
		if r.GetAtUnixNanos() > cut && r.GetAsked() != asked {
			kept = append(kept, r)
		}
	}
	kept = append(kept, &statev1.VelocityRefusal{AtUnixNanos: s.now.UnixNano(), Asked: asked})
	if uint32(len(kept)) < limit {
		return kept[max(0, len(kept)-int(limit)):], ""
	}
	return kept, fmt.Sprintf("doubt: the velocity limit refused %d different changes of endpoint %q within %s (max_velocity_refusals %d): its source keeps asking to take capacity away faster than allowed; check the planner's health checks, then ctl unfreeze",
		len(kept), name, s.window(), limit)
}

// askedKey names what a change asked an endpoint to serve: a hash of its
// addresses' weights.
func askedKey(targets []*pb.Target) string {
	h := sha256.New()
	for _, w := range servedWeights(targets) {
		fmt.Fprintf(h, "%s=%d;", w.GetAddress(), w.GetWeight())
	}
	return hex.EncodeToString(h.Sum(nil)[:8])
}

// trimVelocityRefusals drops the refusals served before cut, as trimServed
// does for the velocity window: called before the window changes, so that
// a longer window never brings back refusals a snapshot no longer holds
// (velocityRefusalsWithin), and every replica counts the same ones.
func (s *State) trimVelocityRefusals(cut int64) {
	for name, rs := range s.velocityRefusals {
		var kept []*statev1.VelocityRefusal
		for _, r := range rs {
			if r.GetAtUnixNanos() > cut {
				kept = append(kept, r)
			}
		}
		if len(kept) == 0 {
			delete(s.velocityRefusals, name)
		} else if len(kept) != len(rs) {
			s.velocityRefusals[name] = kept
		}
	}
}

// velocityRefusalsWithin is velocityRefusals without the refusals older
// than the window, which never count again: what a snapshot keeps, so it
// holds only the endpoints refused lately.
func (s *State) velocityRefusalsWithin() map[string][]*statev1.VelocityRefusal {
	cut := s.now.Add(-s.window()).UnixNano()
	out := map[string][]*statev1.VelocityRefusal{}
	for name, rs := range s.velocityRefusals {
		for _, r := range rs {
			if r.GetAtUnixNanos() > cut {
				out[name] = append(out[name], r)
			}
		}
	}
	return out
}

// freezeOnDoubt freezes the cluster by itself, recording why.
func (s *State) freezeOnDoubt(index uint64, why string) {
	ev := s.event(index, kindFreeze, "cluster")
	s.frozen, s.freezeReason = true, why
	setOutcome(ev, outcomeFrozen)
	ev.Reason = why
	s.record(ev)
}

// reportDoubt judges an enactor's report of what should not happen
// (ReportDoubt). It is fenced as an apply is: only the current holder of
// the lease reports, so an enactor paused past its lease cannot freeze
// the cluster on what it saw before the pause.
//
// A read-back report names the members that did not serve an applied
// plan within the enactor's converge timeout. A minority lagging is what
// the cluster rides out by design (a node down, cut off, restarting), and
// is not recorded; more than max_read_back_failures of the members is a
// cluster not serving what it applied, and freezes it. Only members the
// state knows count, each once, so a report cannot inflate its share.
//
// A rollout report freezes: the enactor stopped a staged rollout (a wave
// not read back, a newer plan marking the wave's new targets unhealthy),
// and what it stopped should not go on until an operator looked.
func (s *State) reportDoubt(index uint64, r *pb.ReportDoubtRequest) Result {
	ev := s.event(index, kindDoubt, r.GetEnactorId())
	ev.Generation, ev.LeaseName, ev.Token = r.GetGeneration(), r.GetLeaseName(), r.GetLeaseToken()
	if !s.Active(LogEnactorDoubt) {
		return s.reject(ev, fmt.Errorf("%w: reports of doubt need log version %d, active is %d", ErrInvalid, LogEnactorDoubt, s.logVersion))
	}
	if _, err := s.checkLease(r.GetLeaseName(), r.GetEnactorId(), r.GetLeaseToken()); err != nil {
		return s.reject(ev, err)
	}
	why := s.doubtReport(r)
	if why == "" {
		return Result{Frozen: s.frozen}
	}
	if s.frozen {
		// What froze the cluster already is what an operator looks at;
		// the report is kept beside it, and the first reason stays.
		setOutcome(ev, outcomeFrozen)
		ev.Reason = why
		s.record(ev)
		return Result{Frozen: true}
	}
	s.frozen, s.freezeReason = true, why
	setOutcome(ev, outcomeFrozen)
	ev.Reason = why
	s.record(ev)
	return Result{Frozen: true, Doubt: why}
}

// doubtReport says why report r freezes the cluster ("" if it does not).
func (s *State) doubtReport(r *pb.ReportDoubtRequest) string {
	eps := ""
	if len(r.GetEndpoints()) > 0 {
		eps = fmt.Sprintf(" (endpoints %s)", strings.Join(r.GetEndpoints(), ", "))
	}
	if r.GetKind() == pb.DoubtKind_DOUBT_KIND_ROLLOUT {
		return fmt.Sprintf("doubt: enactor %q stopped the staged rollout of generation %d%s: %s; check the plan and the targets, then ctl unfreeze (or ctl rollback)",
			r.GetEnactorId(), r.GetGeneration(), eps, r.GetDetail())
	}
	limit := s.Policy().MaxReadBackFailures
	if limit == nil || *limit >= 1 || len(s.members) == 0 {
		return ""
	}
	failed := map[string]bool{}
	for _, id := range r.GetNodes() {
		if s.members[id] != nil {
			failed[id] = true
		}
	}
	share := float64(len(failed)) / float64(len(s.members))
	if share <= *limit {
		return ""
	}
	return fmt.Sprintf("doubt: enactor %q reports %d of %d members (%s) not serving generation %d within its converge timeout%s, more than max_read_back_failures %g: %s; check the nodes' DNS and replication, then ctl unfreeze",
		r.GetEnactorId(), len(failed), len(s.members), strings.Join(slices.Sorted(maps.Keys(failed)), ", "), r.GetGeneration(), eps, *limit, r.GetDetail())
}
