package fsm

import (
	"testing"

	"google.golang.org/protobuf/proto"

	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Events restored from a snapshot written before the history was typed
// (words only) come back with their codes.
func TestRestoreTypesOldEvents(t *testing.T) {
	snap := &statev1.Snapshot{NextGeneration: 1, History: []*pb.HistoryEvent{
		{Index: 1, Kind: "legacy_apply", Outcome: "applied"},
		{Index: 2, Kind: "renew", Outcome: "rejected", Reason: "fenced: ..."},
		{Index: 3, Kind: "cleanup", Outcome: "deleted", KindCode: kindCleanup, OutcomeCode: outcomeDeleted},
	}}
	b, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		k pb.HistoryKind
		o pb.HistoryOutcome
	}{{kindLegacyApply, outcomeApplied}, {kindRenew, outcomeRejected}, {kindCleanup, outcomeDeleted}}
	for i, e := range s.History(0) {
		if e.GetKindCode() != want[i].k || e.GetOutcomeCode() != want[i].o {
			t.Errorf("event %d restored as %v/%v, want %v/%v", i, e.GetKindCode(), e.GetOutcomeCode(), want[i].k, want[i].o)
		}
	}
}
