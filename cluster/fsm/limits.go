package fsm

import (
	"fmt"
	"maps"
	"slices"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// maxEventReason bounds an event's reason (an error text, or what a
// clean-up deleted); longer ones are cut.
const maxEventReason = 2 << 10

// boundEvent keeps an event's strings within their limits before it is
// stored. The rules validate their input before they name it in an event;
// this is the backstop, so that no rule, present or future, can make one
// client's oversized input be kept on every node.
func boundEvent(ev *pb.HistoryEvent) {
	ev.Actor = boundString(ev.Actor, contract.MaxIDLength)
	ev.LeaseName = boundString(ev.LeaseName, contract.MaxIDLength)
	ev.Endpoint = boundString(ev.Endpoint, contract.MaxNameLength)
	ev.Caller = boundString(ev.Caller, callerLimit)
	ev.Method = boundString(ev.Method, contract.MaxIDLength)
	if len(ev.Reason) > maxEventReason {
		cut := maxEventReason
		for cut > 0 && !utf8.RuneStart(ev.Reason[cut]) {
			cut--
		}
		ev.Reason = ev.Reason[:cut] + "..."
	}
}

// boundString replaces a string over limit by a note of its length.
func boundString(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	return fmt.Sprintf("(%d bytes, not kept)", len(s))
}

// trimHistory drops the oldest events until at most HistoryLimit remain
// and they take at most HistoryMaxBytes encoded; the newest always stays.
func (s *State) trimHistory() {
	drop := 0
	for len(s.history)-drop > HistoryLimit ||
		(s.historyBytes > HistoryMaxBytes && len(s.history)-drop > 1) {
		s.historyBytes -= proto.Size(s.history[drop])
		drop++
	}
	if drop > 0 {
		// Dropped events must not stay reachable through the array.
		clear(s.history[:drop])
		s.history = s.history[drop:]
	}
}

// boundPlans keeps the number of stored plans at MaxPlans: past it, the
// oldest plans no endpoint serves are deleted, never keep (the plan just
// stored) and never an applied one (I3). Plans that are applied are
// bounded by the number of endpoints, so they may exceed MaxPlans alone.
func (s *State) boundPlans(index, keep uint64) {
	if len(s.plans) <= contract.MaxPlans {
		return
	}
	live := make(map[uint64]bool, len(s.applied))
	for _, a := range s.applied {
		live[a.Generation] = true
	}
	var deleted []uint64
	for _, g := range slices.Sorted(maps.Keys(s.plans)) {
		if len(s.plans) <= contract.MaxPlans {
			break
		}
		if live[g] || g == keep {
			continue
		}
		delete(s.plans, g)
		deleted = append(deleted, g)
	}
	if len(deleted) > 0 {
		ev := s.event(index, kindCleanup, "state machine")
		setOutcome(ev, outcomeDeleted)
		ev.Reason = fmt.Sprintf("over %d stored plans: deleted generations %v, none applied", contract.MaxPlans, deleted)
		s.record(ev)
	}
}

// shareEndpoints makes plan use parent's endpoint records wherever they
// are equal (same name, TTL, targets and minimum healthy), so that plans
// that differ in a few endpoints share the rest in memory: storing and
// keeping a plan costs in proportion to what changed, not to its size
// (a hundred thousand endpoints kept in ten plans). Stored records are
// never written after they are stored, so sharing them is safe; it
// changes nothing anyone can observe, not even a snapshot's bytes.
func shareEndpoints(plan, parent *pb.Plan) {
	if parent == nil || len(parent.Endpoints) == 0 {
		return
	}
	byName := make(map[string]*pb.EndpointPlan, len(parent.Endpoints))
	for _, ep := range parent.Endpoints {
		byName[ep.Name] = ep
	}
	for i, ep := range plan.Endpoints {
		if old := byName[ep.Name]; old != nil && old != ep && proto.Equal(old, ep) {
			plan.Endpoints[i] = old
		}
	}
}
