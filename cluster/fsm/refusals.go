package fsm

import (
	"fmt"
	"slices"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Refused calls. A node refuses a call at its edge (the caller's role or
// name may not make it, or it is over its write rate) before anything is
// proposed; it gathers its refusals per caller and method and proposes
// them a few seconds at a time (RecordRefusals), so that the audit
// history names every refused caller while a flood of refusals costs the
// log one command per node per interval. The events are kept apart from
// the rest of the history and bounded on their own (RefusalLimit): being
// refused cannot erase the record of what was done.

const (
	// MaxRefusalsPerCommand bounds one RecordRefusals command; a node
	// folds what is past it into a count.
	MaxRefusalsPerCommand = 32
	// RefusalLimit bounds the refused_call events kept.
	RefusalLimit = 200
	// callerLimit bounds a caller's identity in an event: a role, a slash
	// and a name (auth.ValidateName keeps names far shorter).
	callerLimit = 2 * contract.MaxIDLength
)

func validateRefusals(r *pb.RecordRefusalsRequest) error {
	if err := contract.ValidateMemberID(r.GetNodeId()); err != nil {
		return err
	}
	if n := len(r.GetRefusals()); n == 0 || n > MaxRefusalsPerCommand {
		return fmt.Errorf("%w: %d refusals, want 1..%d", ErrInvalid, n, MaxRefusalsPerCommand)
	}
	for i, f := range r.GetRefusals() {
		switch {
		case f.GetCount() == 0:
			return fmt.Errorf("%w: refusal %d: count is 0", ErrInvalid, i)
		case len(f.GetCaller()) > callerLimit, len(f.GetMethod()) > contract.MaxIDLength, len(f.GetReasonCode()) > contract.MaxIDLength,
			len(f.GetReason()) > maxEventReason:
			return fmt.Errorf("%w: refusal %d: caller, method, reason code or reason too long", ErrInvalid, i)
		}
	}
	return nil
}

// recordRefusals records one refused_call event per refusal.
func (s *State) recordRefusals(index uint64, r *pb.RecordRefusalsRequest) Result {
	for _, f := range r.GetRefusals() {
		ev := s.event(index, kindRefusedCall, "")
		setOutcome(ev, outcomeRejected)
		ev.Caller, ev.Method, ev.Count = f.GetCaller(), f.GetMethod(), f.GetCount()
		ev.ReasonCode = f.GetReasonCode()
		ev.Reason = fmt.Sprintf("node %s refused %d call(s): %s", r.GetNodeId(), f.GetCount(), f.GetReason())
		boundEvent(ev)
		s.refusals = append(s.refusals, ev)
	}
	s.trimRefusals()
	return Result{}
}

// trimRefusals drops the oldest refused_call events past RefusalLimit.
func (s *State) trimRefusals() {
	if drop := len(s.refusals) - RefusalLimit; drop > 0 {
		clear(s.refusals[:drop])
		s.refusals = s.refusals[drop:]
	}
}

// mergeHistory merges two runs of events, each in log order, into one.
func mergeHistory(a, b []*pb.HistoryEvent) []*pb.HistoryEvent {
	out := make([]*pb.HistoryEvent, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if b[0].GetIndex() < a[0].GetIndex() {
			out, b = append(out, b[0]), b[1:]
		} else {
			out, a = append(out, a[0]), a[1:]
		}
	}
	return slices.Concat(out, a, b)
}
