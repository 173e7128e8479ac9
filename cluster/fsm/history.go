package fsm

import (
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The audit history is typed: every event carries its kind and outcome as
// codes (and a rejection or refusal its contract reason), and the words
// people read (kind, outcome) are the codes' names, set here and nowhere
// else. Programs (the chaos checker, ctl) read the codes.

// The kinds and outcomes, short.
const (
	kindSubmit        = pb.HistoryKind_HISTORY_KIND_SUBMIT
	kindAcquire       = pb.HistoryKind_HISTORY_KIND_ACQUIRE
	kindRenew         = pb.HistoryKind_HISTORY_KIND_RENEW
	kindRelease       = pb.HistoryKind_HISTORY_KIND_RELEASE
	kindApply         = pb.HistoryKind_HISTORY_KIND_APPLY
	kindCleanup       = pb.HistoryKind_HISTORY_KIND_CLEANUP
	kindFreeze        = pb.HistoryKind_HISTORY_KIND_FREEZE
	kindMember        = pb.HistoryKind_HISTORY_KIND_MEMBER
	kindLegacyApply   = pb.HistoryKind_HISTORY_KIND_LEGACY_APPLY
	kindLegacyCleanup = pb.HistoryKind_HISTORY_KIND_LEGACY_CLEANUP
	kindConfig        = pb.HistoryKind_HISTORY_KIND_CONFIG
	kindRefusedCall   = pb.HistoryKind_HISTORY_KIND_REFUSED_CALL
	kindRollback      = pb.HistoryKind_HISTORY_KIND_ROLLBACK
	kindDoubt         = pb.HistoryKind_HISTORY_KIND_DOUBT

	outcomeAccepted = pb.HistoryOutcome_HISTORY_OUTCOME_ACCEPTED
	outcomeApplied  = pb.HistoryOutcome_HISTORY_OUTCOME_APPLIED
	outcomeStale    = pb.HistoryOutcome_HISTORY_OUTCOME_STALE
	outcomeRefused  = pb.HistoryOutcome_HISTORY_OUTCOME_REFUSED
	outcomeRejected = pb.HistoryOutcome_HISTORY_OUTCOME_REJECTED
	outcomeDeleted  = pb.HistoryOutcome_HISTORY_OUTCOME_DELETED
	outcomeFrozen   = pb.HistoryOutcome_HISTORY_OUTCOME_FROZEN
	outcomeUnfrozen = pb.HistoryOutcome_HISTORY_OUTCOME_UNFROZEN
	outcomeFounded  = pb.HistoryOutcome_HISTORY_OUTCOME_FOUNDED
	outcomeChanged  = pb.HistoryOutcome_HISTORY_OUTCOME_CHANGED
)

// event starts an audit event of kind at index, stamped with the state's
// time and the caller of the command being applied.
func (s *State) event(index uint64, kind pb.HistoryKind, actor string) *pb.HistoryEvent {
	return &pb.HistoryEvent{Index: index, Time: timestamppb.New(s.now), KindCode: kind, Kind: contract.KindName(kind), Actor: actor, Caller: s.caller}
}

// setOutcome records how the event's command ended.
func setOutcome(ev *pb.HistoryEvent, o pb.HistoryOutcome) {
	ev.OutcomeCode, ev.Outcome = o, contract.OutcomeName(o)
}

// typeEvent gives an event restored from a snapshot written before the
// codes existed its codes, read back from its words, so that programs
// reading the history never meet an untyped event.
func typeEvent(ev *pb.HistoryEvent) {
	if ev.KindCode == pb.HistoryKind_HISTORY_KIND_UNSPECIFIED {
		ev.KindCode = contract.ParseKind(ev.Kind)
	}
	if ev.OutcomeCode == pb.HistoryOutcome_HISTORY_OUTCOME_UNSPECIFIED {
		ev.OutcomeCode = contract.ParseOutcome(ev.Outcome)
	}
}
