package fsm

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Read accessors. They return stored values, which are immutable: callers
// must not modify them.

// Plan returns a stored plan, or nil.
func (s *State) Plan(gen uint64) *pb.Plan { return s.plans[gen] }

// NewestPlan returns the stored plan of the highest generation, or nil.
func (s *State) NewestPlan() *pb.Plan {
	var newest *pb.Plan
	for g, p := range s.plans {
		if newest == nil || g > newest.Generation {
			newest = p
		}
	}
	return newest
}

// NewestGeneration is the generation of the newest plan stored, the head
// of the plan chain (0 before the first). Clean-up never deletes it.
func (s *State) NewestGeneration() uint64 { return s.nextGeneration - 1 }

// Plans returns every stored plan in generation order.
func (s *State) Plans() []*pb.Plan {
	out := make([]*pb.Plan, 0, len(s.plans))
	for _, g := range slices.Sorted(maps.Keys(s.plans)) {
		out = append(out, s.plans[g])
	}
	return out
}

// PlansFrom returns the stored plans with generation >= from, in order.
func (s *State) PlansFrom(from uint64) []*pb.Plan {
	var out []*pb.Plan
	for _, g := range slices.Sorted(maps.Keys(s.plans)) {
		if g >= from {
			out = append(out, s.plans[g])
		}
	}
	return out
}

// Applied returns what an endpoint serves, or nil. (A legacy pointer is
// resolved through its plan: see legacy.go.)
func (s *State) Applied(endpoint string) *pb.AppliedEndpoint {
	a := s.applied[contract.CanonicalName(endpoint)]
	if a == nil {
		return nil
	}
	return s.resolve(a)
}

// AppliedAll returns what every applied endpoint serves, sorted by name.
func (s *State) AppliedAll() []*pb.AppliedEndpoint {
	out := s.appliedStored()
	for i, a := range out {
		out[i] = s.resolve(a)
	}
	return out
}

// appliedStored returns the applied records as stored, sorted by name.
func (s *State) appliedStored() []*pb.AppliedEndpoint {
	out := make([]*pb.AppliedEndpoint, 0, len(s.applied))
	for _, n := range slices.Sorted(maps.Keys(s.applied)) {
		out = append(out, s.applied[n])
	}
	return out
}

// Leases returns every lease, expired ones included, sorted by name.
func (s *State) Leases() []*pb.Lease {
	out := make([]*pb.Lease, 0, len(s.leases))
	for _, n := range slices.Sorted(maps.Keys(s.leases)) {
		out = append(out, s.leases[n].Lease)
	}
	return out
}

// History returns up to limit newest events (all kept when limit is 0),
// oldest first: the refused calls among the rest, in log order.
func (s *State) History(limit int) []*pb.HistoryEvent {
	return s.Events(HistoryQuery{Limit: limit})
}

// HistoryQuery selects events: of one endpoint (its canonical name; ""
// for all), recorded at or after Since (the state's time; zero for all),
// the newest Limit of those (0 for all).
type HistoryQuery struct {
	Endpoint string
	Since    time.Time
	Limit    int
}

// Events returns the events q selects, oldest first.
func (s *State) Events(q HistoryQuery) []*pb.HistoryEvent {
	h := mergeHistory(s.history, s.refusals)
	if q.Endpoint != "" || !q.Since.IsZero() {
		name := contract.CanonicalName(q.Endpoint)
		h = slices.DeleteFunc(h, func(ev *pb.HistoryEvent) bool {
			return (name != "" && ev.GetEndpoint() != name) || ev.GetTime().AsTime().Before(q.Since)
		})
	}
	if q.Limit > 0 && len(h) > q.Limit {
		h = h[len(h)-q.Limit:]
	}
	return h
}

// Member is a cluster member's addresses as recorded in the state, and
// the log version its version applies.
type Member struct {
	ID, RaftAddr, GRPCAddr string
	LogVersion             uint32
}

func member(m *statev1.SetMember) Member {
	return Member{ID: m.Id, RaftAddr: m.RaftAddr, GRPCAddr: m.GrpcAddr, LogVersion: m.LogVersion}
}

// Members returns the recorded members, sorted by id.
func (s *State) Members() []Member {
	out := make([]Member, 0, len(s.members))
	for _, id := range slices.Sorted(maps.Keys(s.members)) {
		out = append(out, member(s.members[id]))
	}
	return out
}

// Member returns one member's recorded addresses.
func (s *State) Member(id string) (Member, bool) {
	m, ok := s.members[id]
	if !ok {
		return Member{}, false
	}
	return member(m), true
}

// Frozen reports the freeze switch and its reason.
func (s *State) Frozen() (bool, string) { return s.frozen, s.freezeReason }

// NextGeneration is the generation the next accepted plan gets.
func (s *State) NextGeneration() uint64 { return s.nextGeneration }

// Now is the state machine's time: moved forward by stamps, at most
// MaxTimeStep per command (see advanceTime).
func (s *State) Now() time.Time { return s.now }

// LastIndex is the log index of the last command applied.
func (s *State) LastIndex() uint64 { return s.lastIndex }

// NumPlans and NumApplied count stored plans and applied endpoints.
func (s *State) NumPlans() int   { return len(s.plans) }
func (s *State) NumApplied() int { return len(s.applied) }

// Clone returns an independent copy sharing only immutable values. It is
// O(number of entries) in pointer copies, cheap enough to take under the
// lock that guards Apply.
func (s *State) Clone() *State {
	c := *s
	c.plans = maps.Clone(s.plans)
	c.applied = maps.Clone(s.applied)
	c.leases = maps.Clone(s.leases)
	c.served = maps.Clone(s.served)
	c.members = maps.Clone(s.members)
	// Per-endpoint slices are replaced, never changed in place
	// (keepPrevious), so the clone may share them.
	c.previous = maps.Clone(s.previous)
	c.velocityRefusals = maps.Clone(s.velocityRefusals)
	c.history = slices.Clone(s.history)
	c.refusals = slices.Clone(s.refusals)
	return &c
}

// Marshal encodes the state as a statev1.Snapshot, deterministically: the
// same state always gives the same bytes.
func (s *State) Marshal() ([]byte, error) {
	snap := &statev1.Snapshot{
		Plans:          s.Plans(),
		Applied:        s.appliedStored(),
		History:        s.History(0),
		NextGeneration: s.nextGeneration,
		NowUnixNanos:   s.now.UnixNano(),
		Frozen:         s.frozen,
		FreezeReason:   s.freezeReason,
		LastIndex:      s.lastIndex,
		Config:         s.config,
		LogVersion:     s.logVersion,
	}
	for _, n := range slices.Sorted(maps.Keys(s.leases)) {
		snap.Leases = append(snap.Leases, s.leases[n])
	}
	for _, n := range slices.Sorted(maps.Keys(s.served)) {
		snap.Served = append(snap.Served, s.served[n])
	}
	for _, n := range slices.Sorted(maps.Keys(s.previous)) {
		snap.Previous = append(snap.Previous, s.previous[n]...)
	}
	refused := s.velocityRefusalsWithin()
	for _, n := range slices.Sorted(maps.Keys(refused)) {
		snap.VelocityRefusals = append(snap.VelocityRefusals, &statev1.VelocityRefusals{Endpoint: n, Refusals: refused[n]})
	}
	for _, n := range slices.Sorted(maps.Keys(s.members)) {
		snap.Members = append(snap.Members, s.members[n])
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(snap)
}

// Restore builds a fresh state from Marshal's bytes.
func Restore(b []byte) (*State, error) {
	var snap statev1.Snapshot
	if err := proto.Unmarshal(b, &snap); err != nil {
		return nil, fmt.Errorf("fsm: decoding snapshot: %w", err)
	}
	if v := snap.GetLogVersion(); v > LogVersion {
		// A snapshot of a cluster that runs rules this version does not
		// know: applying the log after it would diverge. As for an
		// ActivateLog above LogVersion, the node must be upgraded.
		return nil, fmt.Errorf("fsm: the snapshot is at log version %d, this version applies up to %d: upgrade this node", v, LogVersion)
	}
	s := New()
	var prev *pb.Plan
	for _, p := range snap.Plans { // in generation order
		shareEndpoints(p, prev)
		s.plans[p.Generation] = p
		prev = p
	}
	for _, a := range snap.Applied {
		s.applied[a.Endpoint] = a
	}
	for _, l := range snap.Leases {
		s.leases[l.Lease.GetName()] = l
	}
	for _, w := range snap.Served {
		s.served[w.Endpoint] = w
	}
	for _, a := range snap.Previous {
		s.previous[a.Endpoint] = append(s.previous[a.Endpoint], a)
	}
	for _, r := range snap.VelocityRefusals {
		s.velocityRefusals[r.Endpoint] = r.Refusals
	}
	s.config = snap.Config
	for _, m := range snap.Members {
		s.members[m.Id] = m
	}
	// Whatever a snapshot holds, the restored history is within the
	// bounds record keeps (the events are freshly decoded, not shared).
	for _, ev := range snap.History {
		typeEvent(ev)
		boundEvent(ev)
		if ev.KindCode == kindRefusedCall && ev.Count > 0 { // not a rejected RecordRefusals
			s.refusals = append(s.refusals, ev)
			continue
		}
		s.history = append(s.history, ev)
		s.historyBytes += proto.Size(ev)
	}
	s.trimHistory()
	s.trimRefusals()
	s.nextGeneration = max(snap.NextGeneration, 1)
	s.now = time.Unix(0, snap.NowUnixNanos).UTC()
	s.frozen, s.freezeReason = snap.Frozen, snap.FreezeReason
	s.lastIndex = snap.LastIndex
	s.logVersion = snap.LogVersion
	return s, nil
}

// String summarizes the state for logs and test failures.
func (s *State) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "next=%d plans=%d applied=%d leases=%d frozen=%v index=%d",
		s.nextGeneration, len(s.plans), len(s.applied), len(s.leases), s.frozen, s.lastIndex)
	return b.String()
}
