package fsm

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// HistoryLimit and HistoryMaxBytes bound the audit history, by count and
// by encoded size: the oldest events are dropped first.
const (
	HistoryLimit    = 1000
	HistoryMaxBytes = 1 << 20
)

// State is the whole replicated state. The zero value is not usable; use
// New or Restore. State is not safe for concurrent use: the cluster wraps
// it in a lock.
type State struct {
	plans   map[uint64]*pb.Plan
	applied map[string]*pb.AppliedEndpoint
	leases  map[string]*statev1.StoredLease
	members map[string]*statev1.SetMember
	// config is the cluster's policy (policy.go); nil until founded.
	config *pb.ClusterConfig
	// served is, per endpoint, what it served within the velocity window.
	served map[string]*statev1.ServedWindow
	// history holds the newest events last, at most HistoryLimit of them
	// and HistoryMaxBytes encoded (historyBytes).
	history      []*pb.HistoryEvent
	historyBytes int
	// previous holds, per endpoint, the records it served before its
	// current ones, oldest first, at most RollbackDepth (rollback.go).
	previous map[string][]*pb.AppliedEndpoint
	// velocityRefusals holds, per endpoint, when the velocity limit
	// refused it within the window (doubt.go); slices are replaced, never
	// changed in place.
	velocityRefusals map[string][]*statev1.VelocityRefusal
	// refusals holds the refused_call events, newest last, at most
	// RefusalLimit: kept apart so that a caller refused over and over
	// cannot push the other events out of the history.
	refusals       []*pb.HistoryEvent
	nextGeneration uint64
	now            time.Time
	frozen         bool
	freezeReason   string
	lastIndex      uint64
	// logVersion is the active log version (version.go).
	logVersion uint32
	// caller is the caller of the command Apply is applying (its events
	// record it); not part of the state between commands.
	caller string
}

// New returns an empty state whose first plan gets generation 1.
func New() *State {
	return &State{
		plans:            map[uint64]*pb.Plan{},
		applied:          map[string]*pb.AppliedEndpoint{},
		leases:           map[string]*statev1.StoredLease{},
		members:          map[string]*statev1.SetMember{},
		served:           map[string]*statev1.ServedWindow{},
		previous:         map[string][]*pb.AppliedEndpoint{},
		velocityRefusals: map[string][]*statev1.VelocityRefusal{},
		nextGeneration:   1,
		// Time starts at the epoch, not at Go's zero time, so that every
		// value it can take survives a snapshot as Unix nanoseconds.
		now: time.Unix(0, 0).UTC(),
	}
}

// Result is what Apply returns for one command. Err is a business
// rejection wrapping one of the package's sentinel errors; when it is set,
// the command changed nothing but the audit history, and, for a velocity
// refusal, the freeze on doubt's count of them (doubt.go).
type Result struct {
	Err        error
	Generation uint64               // SubmitPlan: the generation assigned
	Lease      *pb.Lease            // AcquireLease, RenewLease
	Endpoints  []*pb.EndpointResult // ApplyPlan: one per endpoint
	Deleted    []uint64             // CleanupPlans: generations deleted
	Frozen     bool                 // SetFreeze: the switch afterwards
	Config     *pb.ClusterConfig    // FoundCluster, SetConfig: the policy afterwards
	Kept       []string             // RollbackPlan: endpoints that keep their current records
	// Doubt says why the command froze the cluster by itself (doubt.go).
	Doubt string

	// TimeClipped is how far the command's stamp was beyond what the state
	// machine's time may advance in one command (MaxTimeStep); TimeJump is
	// the advance when it exceeded TimeJumpThreshold. Both are zero in
	// normal operation; the node counts and logs them.
	TimeClipped time.Duration
	TimeJump    time.Duration
}

// Apply executes one command committed at log index. It is deterministic:
// the same state, index and command give the same result and new state on
// every replica. Time in the state machine never runs backwards and moves
// by at most MaxTimeStep per command (advanceTime), so leaders' clocks may
// disagree and one wrong clock cannot move it far.
func (s *State) Apply(index uint64, c Command) (res Result) {
	if index > s.lastIndex {
		s.lastIndex = index
	}
	e := lookup(c.Payload)
	if e == nil {
		// Replicas must not diverge: a command that decoded but has no rule
		// is a programming error, not a rejection.
		panic(fmt.Sprintf("fsm: no rule for payload %T", c.Payload))
	}
	clipped, jump := s.advanceTime(c.Stamp)
	if s.Active(LogRefusals) {
		s.caller = c.Caller
	}
	defer func() { res.TimeClipped, res.TimeJump, s.caller = clipped, jump, "" }()
	if err := e.validate(c.Payload); err != nil {
		// The event names nothing from the command: invalid input is not
		// kept.
		return s.reject(s.event(index, e.kind, ""), err)
	}
	return e.rule(s, index, c.Payload)
}

func (s *State) submitPlan(index uint64, c *statev1.SubmitPlan) Result {
	plan := c.GetPlan()
	ev := s.event(index, kindSubmit, plan.GetPlannerId())
	if c.GetLeaseName() != "" {
		// A fenced planner: only the current holder of its lease stores.
		ev.LeaseName, ev.Token = c.GetLeaseName(), c.GetLeaseToken()
		if _, err := s.checkLease(c.GetLeaseName(), plan.GetPlannerId(), c.GetLeaseToken()); err != nil {
			return s.reject(ev, err)
		}
	}
	// Apply what was reviewed: the plan chain has not moved since, and
	// the plan is the one reviewed.
	if !s.Active(LogReviewed) {
		// An older replica ignores these fields; so does every replica
		// until the version is active (the edge refuses them before).
		c = proto.CloneOf(c)
		c.ExpectedParent, c.ExpectedDigest = nil, ""
	}
	if c.ExpectedParent != nil && c.GetExpectedParent() != s.NewestGeneration() {
		return s.reject(ev, fmt.Errorf("%w: the newest plan is generation %d, not %d", ErrParentMoved, s.NewestGeneration(), c.GetExpectedParent()))
	}
	if d := c.GetDelta(); d != nil {
		// The log carries the change; the state stores the whole plan it
		// makes with its parent, which the check above made the newest.
		if !s.Active(LogDeltas) {
			return s.reject(ev, fmt.Errorf("%w: deltas need log version %d, active is %d", ErrInvalid, LogDeltas, s.logVersion))
		}
		parent := s.plans[c.GetExpectedParent()]
		if parent == nil && c.GetExpectedParent() != 0 {
			return s.reject(ev, fmt.Errorf("%w: the parent, generation %d, is not stored", ErrNotFound, c.GetExpectedParent()))
		}
		full, err := contract.ApplyDelta(parent, plan, d)
		if err == nil {
			err = contract.ValidatePlan(full)
		}
		if err != nil {
			return s.reject(ev, err)
		}
		ev.Reason = fmt.Sprintf("delta on generation %d: %d endpoints given, %d removed",
			c.GetExpectedParent(), len(d.GetEndpoints()), len(d.GetRemove()))
		plan = full
	}
	if d := c.GetExpectedDigest(); d != "" {
		if got := contract.PlanDigest(plan); got != d {
			return s.reject(ev, fmt.Errorf("%w: the plan's digest is %s, not %s", ErrDigest, got, d))
		}
	}
	plan = proto.Clone(plan).(*pb.Plan)
	plan.Held = false // only the cluster holds a plan (below), whatever the request says
	if !s.Active(LogMinHealthy) {
		for _, ep := range plan.Endpoints {
			ep.MinHealthyTargets, ep.MinHealthyFraction = 0, 0
		}
	}
	if doubt := s.doubtPlan(plan); doubt != "" && !c.GetForce() {
		// Stored for review and held: never applied, whatever happens to
		// the freeze (its records, once reviewed, are submitted again).
		plan.Held = true
		res := s.storePlan(index, ev, plan, false, false)
		res.Doubt, res.Frozen = doubt, true
		s.freezeOnDoubt(index, doubt)
		return res
	}
	return s.storePlan(index, ev, plan, c.GetForce(), !c.GetForce())
}

// storePlan stores plan (the state's own copy) as the next generation,
// after the per-endpoint rules when early (they run again, the authority,
// when it is applied), and records ev.
func (s *State) storePlan(index uint64, ev *pb.HistoryEvent, plan *pb.Plan, force, early bool) Result {
	// Only the cluster says a plan is forced, from the request's force,
	// and what its digest is.
	plan.Forced, plan.Digest = force, ""
	if s.Active(LogReviewed) {
		plan.Digest = contract.PlanDigest(plan)
	}
	for _, ep := range plan.Endpoints {
		ep.Name = contract.CanonicalName(ep.Name)
		if !early {
			continue
		}
		// An early answer: the same rules run again, authoritatively, when
		// the plan is applied (against what is served then).
		if err := s.checkEndpointRules(ep); err != nil {
			ev.Endpoint = ep.Name
			doubt := s.noteVelocityRefusal(index, ep.Name, ep.Targets, err)
			if doubt != "" {
				// The caller learns of the freeze from the refusal.
				err = fmt.Errorf("%w; the cluster froze itself: %s", err, doubt)
			}
			res := s.reject(ev, &EndpointError{Endpoint: ep.Name, Err: err})
			res.Doubt, res.Frozen = doubt, doubt != ""
			return res
		}
	}
	shareEndpoints(plan, s.NewestPlan())
	gen := s.nextGeneration
	plan.Generation = gen
	if plan.CreatedAt == nil {
		plan.CreatedAt = timestamppb.New(s.now)
	}
	s.nextGeneration++
	s.plans[gen] = plan
	s.boundPlans(index, gen)
	ev.Generation = gen
	setOutcome(ev, outcomeAccepted)
	if force {
		ev.Reason = strings.TrimPrefix(ev.Reason+"; forced", "; ")
	}
	s.record(ev)
	return Result{Generation: gen}
}

func (s *State) acquireLease(index uint64, r *pb.AcquireLeaseRequest) Result {
	ttl := r.GetTtl().AsDuration()
	ev := s.event(index, kindAcquire, r.GetHolder())
	ev.LeaseName = r.GetName()
	if cur := s.leases[r.GetName()]; cur != nil && s.live(cur) && cur.Lease.Holder != r.GetHolder() {
		// Standbys ask every few seconds; recording each refusal would push
		// the events that matter out of the bounded history.
		return Result{Err: fmt.Errorf("%w: %q holds lease %q until %s",
			ErrLeaseHeld, cur.Lease.Holder, r.GetName(), cur.Lease.ExpiresAt.AsTime().Format(time.RFC3339Nano))}
	}
	// The token is the log index of this command: strictly greater than
	// every token granted before, for any lease, in any term.
	l := &statev1.StoredLease{
		Lease: &pb.Lease{
			Name:      r.GetName(),
			Holder:    r.GetHolder(),
			Token:     index,
			ExpiresAt: timestamppb.New(s.now.Add(ttl)),
			Ttl:       durationpb.New(ttl),
		},
		TtlNanos: int64(ttl),
	}
	s.leases[r.GetName()] = l
	ev.Token = index
	setOutcome(ev, outcomeAccepted)
	s.record(ev)
	return Result{Lease: l.Lease}
}

// live reports whether a lease is unexpired at the state machine's time.
func (s *State) live(l *statev1.StoredLease) bool {
	return s.now.Before(l.Lease.ExpiresAt.AsTime())
}

// checkLease is the fencing rule: the token must be the current one of an
// unexpired lease held by holder.
func (s *State) checkLease(name, holder string, token uint64) (*statev1.StoredLease, error) {
	cur := s.leases[name]
	switch {
	case cur == nil:
		return nil, fmt.Errorf("%w: lease %q is not held", ErrFenced, name)
	case cur.Lease.Token != token:
		return nil, fmt.Errorf("%w: token %d of lease %q is superseded by %d", ErrFenced, token, name, cur.Lease.Token)
	case cur.Lease.Holder != holder:
		return nil, fmt.Errorf("%w: lease %q is held by %q, not %q", ErrFenced, name, cur.Lease.Holder, holder)
	case !s.live(cur):
		return nil, fmt.Errorf("%w: lease %q expired at %s", ErrFenced, name, cur.Lease.ExpiresAt.AsTime().Format(time.RFC3339Nano))
	}
	return cur, nil
}

func (s *State) renewLease(index uint64, r *pb.RenewLeaseRequest) Result {
	cur, err := s.checkLease(r.GetName(), r.GetHolder(), r.GetToken())
	if err != nil {
		// Successful renewals are routine and not recorded; refusals are.
		ev := s.event(index, kindRenew, r.GetHolder())
		ev.LeaseName, ev.Token = r.GetName(), r.GetToken()
		return s.reject(ev, err)
	}
	ttl := time.Duration(cur.TtlNanos)
	l := &statev1.StoredLease{
		Lease: &pb.Lease{
			Name:      cur.Lease.Name,
			Holder:    cur.Lease.Holder,
			Token:     cur.Lease.Token,
			ExpiresAt: timestamppb.New(s.now.Add(ttl)),
			Ttl:       cur.Lease.Ttl,
		},
		TtlNanos: cur.TtlNanos,
	}
	s.leases[r.GetName()] = l
	return Result{Lease: l.Lease}
}

func (s *State) releaseLease(index uint64, r *pb.ReleaseLeaseRequest) Result {
	ev := s.event(index, kindRelease, r.GetHolder())
	ev.LeaseName, ev.Token = r.GetName(), r.GetToken()
	cur := s.leases[r.GetName()]
	if cur == nil {
		// Already released: releasing is idempotent.
		setOutcome(ev, outcomeAccepted)
		s.record(ev)
		return Result{}
	}
	if cur.Lease.Token != r.GetToken() || cur.Lease.Holder != r.GetHolder() {
		return s.reject(ev, fmt.Errorf("%w: lease %q is held by %q with token %d", ErrFenced, r.GetName(), cur.Lease.Holder, cur.Lease.Token))
	}
	delete(s.leases, r.GetName())
	setOutcome(ev, outcomeAccepted)
	s.record(ev)
	return Result{}
}

func (s *State) applyPlan(index uint64, r *pb.ApplyPlanRequest) Result {
	ev := s.event(index, kindApply, r.GetEnactorId())
	ev.Generation, ev.LeaseName, ev.Token = r.GetGeneration(), r.GetLeaseName(), r.GetLeaseToken()
	if s.frozen {
		return s.reject(ev, fmt.Errorf("%w: applies are frozen: %s", ErrFrozen, s.freezeReason))
	}
	if _, err := s.checkLease(r.GetLeaseName(), r.GetEnactorId(), r.GetLeaseToken()); err != nil {
		return s.reject(ev, err)
	}
	plan := s.plans[r.GetGeneration()]
	if plan == nil {
		return s.reject(ev, fmt.Errorf("%w: generation %d is unknown or deleted", ErrNotFound, r.GetGeneration()))
	}
	if plan.GetHeld() {
		return s.reject(ev, fmt.Errorf("%w: generation %d was stored for review when the cluster froze on doubt; submit its records again to use them", ErrHeld, r.GetGeneration()))
	}
	var eps []*pb.EndpointPlan
	if len(r.GetEndpoints()) == 0 {
		eps = plan.Endpoints
	} else {
		eps = make([]*pb.EndpointPlan, 0, len(r.GetEndpoints()))
		for _, name := range r.GetEndpoints() {
			ep := findEndpoint(plan, contract.CanonicalName(name))
			if ep == nil {
				ev.Endpoint = name
				return s.reject(ev, fmt.Errorf("%w: endpoint %q is not in generation %d", ErrNotFound, name, r.GetGeneration()))
			}
			eps = append(eps, ep)
		}
	}
	// The checks and the write are one step: nothing can run between
	// them, so an old plan can never overwrite a newer one, and the
	// velocity and family rules judge exactly what is served.
	results := make([]*pb.EndpointResult, 0, len(eps))
	var doubt string // set when a refusal here froze the cluster
	for _, ep := range eps {
		res := &pb.EndpointResult{Endpoint: ep.Name}
		epEv := proto.Clone(ev).(*pb.HistoryEvent)
		epEv.Endpoint = ep.Name
		cur := s.applied[ep.Name]
		switch {
		case cur != nil && cur.Generation == plan.Generation && cur.LeaseToken == r.GetLeaseToken() && cur.EnactorId == r.GetEnactorId():
			// A retry of an apply that succeeded (its answer was lost): the
			// same write under the same token. It is answered as applied
			// and changes nothing, not even the history.
			res.Outcome = pb.Outcome_OUTCOME_APPLIED
			res.AppliedGeneration = cur.Generation
			results = append(results, res)
			continue
		case cur != nil && cur.Generation >= plan.Generation:
			res.Outcome = pb.Outcome_OUTCOME_STALE
			res.AppliedGeneration = cur.Generation
			setOutcome(epEv, outcomeStale)
			epEv.Reason = fmt.Sprintf("endpoint serves generation %d", cur.Generation)
		default:
			var err error
			if !plan.GetForced() {
				err = s.checkEndpointRules(ep)
			}
			if err != nil {
				res.Outcome = pb.Outcome_OUTCOME_REFUSED
				res.Reason = string(Reason(err))
				res.Detail = err.Error()
				if cur != nil {
					res.AppliedGeneration = cur.Generation
				}
				setOutcome(epEv, outcomeRefused)
				epEv.Reason, epEv.ReasonCode = err.Error(), res.Reason
				if d := s.noteVelocityRefusal(index, ep.Name, ep.Targets, err); d != "" {
					doubt = d
				}
				break
			}
			if s.Active(LogRollback) {
				before := s.servedRecords(ep.Name)
				recordChange(epEv, before, ep)
				s.keepPrevious(before, ep)
			}
			s.applied[ep.Name] = materialize(ep, plan.Generation, r, index, s.now)
			s.recordServed(ep.Name, ep.Targets)
			res.Outcome = pb.Outcome_OUTCOME_APPLIED
			res.AppliedGeneration = plan.Generation
			setOutcome(epEv, outcomeApplied)
			if plan.GetForced() {
				epEv.Reason = "forced"
			}
		}
		s.record(epEv)
		results = append(results, res)
	}
	return Result{Endpoints: results, Doubt: doubt, Frozen: doubt != ""}
}

// MaxEventDiff bounds each list of an apply event's diff (added, removed,
// weights); the rest is counted in EndpointDiff.omitted.
const MaxEventDiff = 16

// recordChange records in an apply event what the endpoint served before
// (generation and records) and how its records change: the audit trail
// shows before and after without keeping every plan.
func recordChange(ev *pb.HistoryEvent, before *pb.AppliedEndpoint, after *pb.EndpointPlan) {
	var from *pb.EndpointPlan
	if before != nil {
		ev.PreviousGeneration = before.GetGeneration()
		from = &pb.EndpointPlan{Name: before.GetEndpoint(), Ttl: before.GetTtl(), Targets: before.GetTargets()}
	}
	ev.Diff = contract.DiffEndpoint(after.GetName(), from, after)
	contract.BoundDiff(ev.Diff, MaxEventDiff)
}

// servedRecords is what endpoint name serves now (nil: nothing).
func (s *State) servedRecords(name string) *pb.AppliedEndpoint {
	if a := s.applied[name]; a != nil {
		return s.resolve(a)
	}
	return nil
}

// materialize copies an endpoint's records out of its plan, so that what is
// served never depends on the plan still existing.
func materialize(ep *pb.EndpointPlan, gen uint64, r *pb.ApplyPlanRequest, index uint64, now time.Time) *pb.AppliedEndpoint {
	return &pb.AppliedEndpoint{
		Endpoint:   ep.Name,
		Generation: gen,
		Ttl:        ep.Ttl,
		Targets:    ep.Targets, // shared with the plan: stored values are never written
		EnactorId:  r.GetEnactorId(),
		LeaseToken: r.GetLeaseToken(),
		AppliedAt:  timestamppb.New(now),
		Revision:   index,
	}
}

func findEndpoint(p *pb.Plan, name string) *pb.EndpointPlan {
	for _, ep := range p.Endpoints {
		if ep.Name == name {
			return ep
		}
	}
	return nil
}

func (s *State) cleanupPlans(index uint64, r *pb.CleanupPlansRequest) Result {
	ev := s.event(index, kindCleanup, "")
	if s.frozen {
		return s.reject(ev, fmt.Errorf("%w: clean-up is frozen: %s", ErrFrozen, s.freezeReason))
	}
	live := make(map[uint64]bool, len(s.applied))
	for _, a := range s.applied {
		live[a.Generation] = true
	}
	gens := slices.Sorted(maps.Keys(s.plans))
	keepFrom := len(gens) - int(min(r.GetKeepLast(), uint32(len(gens))))
	var deleted []uint64
	for _, g := range gens[:keepFrom] {
		if live[g] {
			continue
		}
		delete(s.plans, g)
		deleted = append(deleted, g)
	}
	if len(deleted) > 0 {
		// A clean-up that deletes nothing (the usual case) is not news.
		setOutcome(ev, outcomeDeleted)
		ev.Reason = fmt.Sprintf("deleted generations %v, kept the newest %d and every applied one", deleted, r.GetKeepLast())
		s.record(ev)
	}
	return Result{Deleted: deleted}
}

func (s *State) setFreeze(index uint64, r *pb.SetFreezeRequest) Result {
	ev := s.event(index, kindFreeze, "operator")
	s.frozen = r.GetFrozen()
	s.freezeReason = r.GetReason()
	if s.frozen {
		setOutcome(ev, outcomeFrozen)
	} else {
		setOutcome(ev, outcomeUnfrozen)
		s.freezeReason = ""
	}
	ev.Reason = r.GetReason()
	s.record(ev)
	return Result{Frozen: s.frozen}
}

// setMember records a member's addresses; removeMember forgets them.
// Routine, so only refusals reach the history.
func (s *State) setMember(index uint64, m *statev1.SetMember) Result {
	s.members[m.GetId()] = m
	return Result{}
}

func (s *State) removeMember(index uint64, m *statev1.RemoveMember) Result {
	delete(s.members, m.GetId())
	return Result{}
}

func (s *State) reject(ev *pb.HistoryEvent, err error) Result {
	setOutcome(ev, outcomeRejected)
	ev.Reason, ev.ReasonCode = err.Error(), string(Reason(err))
	s.record(ev)
	return Result{Err: err}
}

// record appends an event to the audit history, its strings bounded
// (boundEvent), and drops the oldest events past HistoryLimit or
// HistoryMaxBytes.
func (s *State) record(ev *pb.HistoryEvent) {
	boundEvent(ev)
	s.history = append(s.history, ev)
	s.historyBytes += proto.Size(ev)
	s.trimHistory()
}
