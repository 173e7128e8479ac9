package fsm

import (
	"cmp"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/contract"
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

// Every event a command records names the command's caller, accepted or
// rejected, and the caller does not outlive its command.
func TestEventsRecordTheCaller(t *testing.T) {
	h := newHarness(t)
	h.caller = "planner/p1"
	gen := h.mustSubmit(validPlan())
	h.caller = "enactor/az-a"
	l := h.mustAcquire("enactor/az-a", "az-a", time.Minute)
	h.mustApply(gen, l.Name, l.Token, "az-a")
	h.caller = "enactor/az-b"
	if r := h.apply(gen, l.Name, l.Token+1, "az-a"); r.Err == nil {
		t.Fatal("apply with a wrong token accepted")
	}
	h.caller = ""
	h.freeze(true, "incident")
	want := map[pb.HistoryKind][]string{
		kindSubmit:  {"planner/p1"},
		kindAcquire: {"enactor/az-a"},
		kindApply:   {"enactor/az-a", "enactor/az-a", "enactor/az-b"},
		kindFreeze:  {""},
	}
	got := map[pb.HistoryKind][]string{}
	for _, ev := range h.s.History(0) {
		got[ev.KindCode] = append(got[ev.KindCode], ev.Caller)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("callers by kind: %v, want %v", got, want)
	}
	if h.s.caller != "" {
		t.Errorf("caller %q left in the state after Apply", h.s.caller)
	}
}

func refusals(node string, n int) *pb.RecordRefusalsRequest {
	r := &pb.RecordRefusalsRequest{NodeId: node}
	for i := range n {
		r.Refusals = append(r.Refusals, &pb.Refusal{Caller: fmt.Sprintf("reader/r%d", i), Method: "SubmitPlan",
			ReasonCode: string(contract.ReasonPermission), Reason: "reader may not call SubmitPlan", Count: uint64(i + 1)})
	}
	return r
}

// Refused calls are recorded one event per caller and method, and however
// many there are, they never push the other events out of the history: a
// caller refused over and over cannot erase the record of what was done.
func TestRefusalsKeptApart(t *testing.T) {
	h := newHarness(t)
	h.caller = "planner/p1"
	gen := h.mustSubmit(validPlan())
	h.caller = "node/n2"
	for range RefusalLimit {
		if r := h.do(refusals("n2", MaxRefusalsPerCommand)); r.Err != nil {
			t.Fatal(r.Err)
		}
	}
	h.caller = "planner/p1"
	h.mustSubmit(validPlan())
	hist := h.s.History(0)
	var refused, submits []*pb.HistoryEvent
	for _, ev := range hist {
		switch ev.KindCode {
		case kindRefusedCall:
			refused = append(refused, ev)
		case kindSubmit:
			submits = append(submits, ev)
		}
	}
	if len(submits) != 2 || submits[0].Generation != gen {
		t.Fatalf("submit events %v: the refusals pushed them out", submits)
	}
	if len(refused) != RefusalLimit {
		t.Fatalf("%d refused_call events, want %d", len(refused), RefusalLimit)
	}
	last := refused[len(refused)-1]
	if last.Caller != fmt.Sprintf("reader/r%d", MaxRefusalsPerCommand-1) || last.Method != "SubmitPlan" ||
		last.Count != MaxRefusalsPerCommand || last.ReasonCode != "PERMISSION" || last.OutcomeCode != outcomeRejected ||
		!strings.Contains(last.Reason, "node n2 refused") {
		t.Errorf("refusal recorded as %v", last)
	}
	if !slices.IsSortedFunc(hist, func(a, b *pb.HistoryEvent) int { return cmp.Compare(a.Index, b.Index) }) {
		t.Error("history is not in log order")
	}
	// A snapshot keeps both, apart.
	b, err := h.s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.refusals) != RefusalLimit || len(r.history) != len(h.s.history) {
		t.Errorf("restored %d refusals and %d events, want %d and %d", len(r.refusals), len(r.history), RefusalLimit, len(h.s.history))
	}
}

func TestRefusalsValidated(t *testing.T) {
	long := strings.Repeat("x", 1000)
	for name, r := range map[string]*pb.RecordRefusalsRequest{
		"no node":    {Refusals: refusals("n1", 1).Refusals},
		"none":       {NodeId: "n1"},
		"too many":   refusals("n1", MaxRefusalsPerCommand+1),
		"count 0":    {NodeId: "n1", Refusals: []*pb.Refusal{{Caller: "reader/r", Method: "M"}}},
		"long call":  {NodeId: "n1", Refusals: []*pb.Refusal{{Caller: long, Method: "M", Count: 1}}},
		"long reply": {NodeId: "n1", Refusals: []*pb.Refusal{{Caller: "reader/r", Method: long, Count: 1}}},
	} {
		if err := Validate(r); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

// An apply event says what the endpoint served before and how its records
// changed, bounded however many addresses change.
func TestApplyRecordsBeforeAndAfter(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor/0", "az-a", time.Minute)
	g1 := h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.1", 1), target("b", "192.0.2.2", 1))))
	h.mustApply(g1, l.Name, l.Token, "az-a")
	g2 := h.mustSubmit(plan(endpoint(api, target("a", "192.0.2.1", 2), target("b", "192.0.2.2", 1), target("c", "192.0.2.3", 1))))
	h.mustApply(g2, l.Name, l.Token, "az-a")
	var many []*pb.Target
	for i := range 40 {
		many = append(many, target(fmt.Sprintf("t%d", i), fmt.Sprintf("198.51.100.%d", i+1), 1))
	}
	h.s.config.MaxCapacityDrop = 1
	g3 := h.submit(plan(endpoint(api, many...)), true).Generation
	h.mustApply(g3, l.Name, l.Token, "az-a")
	var applies []*pb.HistoryEvent
	for _, ev := range h.s.Events(HistoryQuery{Endpoint: "API.dnsplan.test."}) {
		if ev.KindCode == kindApply {
			applies = append(applies, ev)
		}
	}
	if len(applies) != 3 {
		t.Fatalf("%d apply events of the endpoint, want 3", len(applies))
	}
	first, second, third := applies[0], applies[1], applies[2]
	if first.PreviousGeneration != 0 || !slices.Equal(first.Diff.GetAdded(), []string{"192.0.2.1", "192.0.2.2"}) || first.Diff.GetChange() != "added" {
		t.Errorf("first apply: from %d, diff %v", first.PreviousGeneration, first.Diff)
	}
	if second.PreviousGeneration != g1 || !slices.Equal(second.Diff.GetAdded(), []string{"192.0.2.3"}) ||
		len(second.Diff.GetWeights()) != 1 || second.Diff.GetWeights()[0].GetTo() != 2 {
		t.Errorf("second apply: from %d, diff %v", second.PreviousGeneration, second.Diff)
	}
	if third.PreviousGeneration != g2 || len(third.Diff.GetAdded()) != MaxEventDiff || len(third.Diff.GetRemoved()) != 3 ||
		third.Diff.GetOmitted() != 40-MaxEventDiff {
		t.Errorf("a change of 40 addresses: added %d, removed %d, omitted %d", len(third.Diff.GetAdded()), len(third.Diff.GetRemoved()), third.Diff.GetOmitted())
	}
	if got := h.s.Events(HistoryQuery{Since: time.Unix(0, 0).Add(1 << 62)}); len(got) != 0 {
		t.Errorf("events since the far future: %d", len(got))
	}
}
