package fsm

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// huge is an input no limit allows: 1 MiB.
var huge = strings.Repeat("x", 1<<20)

// maxErrorText bounds what a refusal may say: enough for any message the
// rules write, far below any input they refuse.
const maxErrorText = 4 << 10

// historyBytes is the encoded size of the whole audit history.
func historyBytes(s *State) int {
	n := 0
	for _, ev := range s.History(0) {
		n += proto.Size(ev)
	}
	return n
}

// Every string a command carries is bounded inside Apply, whoever sent it:
// a 1 MiB lease name, holder, freeze reason, member id or address, enactor
// or planner id is refused as invalid, the refusal does not quote it, the
// state is unchanged, and nothing of it reaches the audit history.
func TestApplyRefusesHugeStrings(t *testing.T) {
	tests := []struct {
		name string
		cmd  func(h *harness) proto.Message
	}{
		{"acquire, lease name", func(*harness) proto.Message {
			return &pb.AcquireLeaseRequest{Name: huge, Holder: "enactor-a", Ttl: durationpb.New(time.Second)}
		}},
		{"acquire, holder", func(*harness) proto.Message {
			return &pb.AcquireLeaseRequest{Name: "enactor", Holder: huge, Ttl: durationpb.New(time.Second)}
		}},
		{"renew, lease name", func(*harness) proto.Message {
			return &pb.RenewLeaseRequest{Name: huge, Holder: "enactor-a", Token: 4}
		}},
		{"renew, holder", func(*harness) proto.Message { return &pb.RenewLeaseRequest{Name: "enactor", Holder: huge, Token: 4} }},
		{"release, lease name", func(*harness) proto.Message {
			return &pb.ReleaseLeaseRequest{Name: huge, Holder: "enactor-a", Token: 4}
		}},
		{"release, holder", func(*harness) proto.Message {
			return &pb.ReleaseLeaseRequest{Name: "enactor", Holder: huge, Token: 4}
		}},
		{"freeze, reason", func(*harness) proto.Message { return &pb.SetFreezeRequest{Frozen: true, Reason: huge} }},
		{"set member, id", func(*harness) proto.Message {
			return &statev1.SetMember{Id: huge, RaftAddr: "127.0.0.1:7001", GrpcAddr: "127.0.0.1:9001"}
		}},
		{"set member, raft address", func(*harness) proto.Message {
			return &statev1.SetMember{Id: "n2", RaftAddr: huge, GrpcAddr: "127.0.0.1:9001"}
		}},
		{"set member, grpc address", func(*harness) proto.Message {
			return &statev1.SetMember{Id: "n2", RaftAddr: "127.0.0.1:7001", GrpcAddr: huge}
		}},
		{"set member, no id", func(*harness) proto.Message {
			return &statev1.SetMember{RaftAddr: "127.0.0.1:7001", GrpcAddr: "127.0.0.1:9001"}
		}},
		{"remove member, id", func(*harness) proto.Message { return &statev1.RemoveMember{Id: huge} }},
		{"apply, enactor", func(*harness) proto.Message {
			return &pb.ApplyPlanRequest{Generation: 2, LeaseName: "enactor", LeaseToken: 4, EnactorId: huge}
		}},
		{"apply, endpoint", func(*harness) proto.Message {
			return &pb.ApplyPlanRequest{Generation: 2, Endpoints: []string{huge}, LeaseName: "enactor", LeaseToken: 4, EnactorId: "enactor-a"}
		}},
		{"submit, planner id", func(*harness) proto.Message {
			p := plan(weighted(api, 1))
			p.PlannerId = huge
			return &statev1.SubmitPlan{Plan: p}
		}},
		{"submit, target address", func(*harness) proto.Message {
			return &statev1.SubmitPlan{Plan: plan(endpoint(api, target("a", huge, 1)))}
		}},
		{"submit, endpoint name", func(*harness) proto.Message {
			return &statev1.SubmitPlan{Plan: plan(weighted(huge, 1))}
		}},
		{"submit, lease name", func(*harness) proto.Message {
			return &statev1.SubmitPlan{Plan: plan(weighted(api, 1)), LeaseName: huge, LeaseToken: 4}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := fuzzBase(t)
			before := fingerprint(t, h.s)
			members := h.s.Members()
			r := h.do(tc.cmd(h))
			wantErr(t, tc.name, r, ErrInvalid)
			if n := len(r.Err.Error()); n > maxErrorText {
				t.Fatalf("the refusal is %d bytes long: it quotes the input", n)
			}
			if !bytes.Equal(before, fingerprint(t, h.s)) || len(h.s.Members()) != len(members) {
				t.Fatalf("a refused command changed the state")
			}
			if n := historyBytes(h.s); n > 64<<10 {
				t.Fatalf("the audit history holds %d bytes after one refusal", n)
			}
		})
	}
}

// The audit history is bounded by bytes as well as by count: events with
// long (but valid) reasons push the oldest out, the newest stay, and a
// restored state holds the same events.
func TestHistoryBoundedByBytes(t *testing.T) {
	h := newHarness(t)
	reason := strings.Repeat("r", contract.MaxReasonLength)
	for i := 0; i < HistoryLimit; i++ {
		h.freeze(i%2 == 0, reason)
	}
	ev := h.s.History(0)
	if n := historyBytes(h.s); n > HistoryMaxBytes {
		t.Fatalf("history holds %d bytes in %d events, limit %d", n, len(ev), HistoryMaxBytes)
	}
	if len(ev) == 0 || ev[len(ev)-1].Index != h.index {
		t.Fatalf("the newest event is not kept")
	}
	if len(ev) > HistoryMaxBytes/contract.MaxReasonLength {
		t.Fatalf("history holds %d events of more than %d bytes each", len(ev), contract.MaxReasonLength)
	}
	for i := 1; i < len(ev); i++ {
		if ev[i].Index != ev[i-1].Index+1 {
			t.Fatalf("history has a gap at %d: the oldest must go first", ev[i].Index)
		}
	}
	s, err := Restore(marshal(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	h.freeze(false, reason)
	s.Apply(h.index, Command{Stamp: h.stamp, Payload: &pb.SetFreezeRequest{Reason: reason}})
	if !bytes.Equal(marshal(t, h.s), marshal(t, s)) {
		t.Fatalf("a restored state keeps a different history")
	}
}

// The state machine bounds the plans it stores: past MaxPlans, storing a
// plan deletes the oldest plans no endpoint serves. Applied plans and the
// newest are never deleted.
func TestStoredPlansBounded(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	first := h.mustSubmit(plan(weighted(api, 1)))
	h.mustApply(first, "enactor", l.Token, "enactor-a")
	fipsGen := h.mustSubmit(plan(weighted(fips, 1)))
	h.mustApply(fipsGen, "enactor", l.Token, "enactor-a")
	var newest uint64
	for i := 0; i < contract.MaxPlans+10; i++ {
		newest = h.mustSubmit(plan(weighted(v6, 1)))
	}
	if n := h.s.NumPlans(); n > contract.MaxPlans {
		t.Fatalf("%d plans stored, limit %d", n, contract.MaxPlans)
	}
	for _, g := range []uint64{first, fipsGen, newest} {
		if h.s.Plan(g) == nil {
			t.Fatalf("generation %d deleted; applied: %v, newest: %d", g, []uint64{first, fipsGen}, newest)
		}
	}
	// What goes is the oldest: the kept unapplied generations are the
	// newest ones, without a gap.
	plans := h.s.Plans()
	for i := 3; i < len(plans); i++ {
		if plans[i].Generation != plans[i-1].Generation+1 {
			t.Fatalf("kept generations %d then %d: a newer plan went before an older one", plans[i-1].Generation, plans[i].Generation)
		}
	}
	if plans[len(plans)-1].Generation != newest {
		t.Fatalf("newest kept %d, want %d", plans[len(plans)-1].Generation, newest)
	}
	if ev := lastEvent(t, h.s); ev.Kind != "submit" || ev.Generation != newest {
		t.Fatalf("last event %v", ev)
	}
	if !containsEvent(h.s, "cleanup", "state machine") {
		t.Fatalf("the clean-up the state machine did is not in the history")
	}
}

func containsEvent(s *State, kind, actor string) bool {
	for _, ev := range s.History(0) {
		if ev.Kind == kind && ev.Actor == actor {
			return true
		}
	}
	return false
}

// A snapshot whose history is over the bounds (too many events, too many
// bytes, an oversized string) restores to a history within them.
func TestRestoreBoundsHistory(t *testing.T) {
	snap := &statev1.Snapshot{NextGeneration: 1}
	for i := 1; i <= 2*HistoryLimit; i++ {
		snap.History = append(snap.History, &pb.HistoryEvent{Index: uint64(i), Kind: "freeze", Reason: strings.Repeat("r", contract.MaxReasonLength)})
	}
	snap.History = append(snap.History, &pb.HistoryEvent{Index: 2*HistoryLimit + 1, Kind: "renew", Actor: huge})
	b, err := proto.Marshal(snap)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	ev := s.History(0)
	if n := historyBytes(s); n > HistoryMaxBytes || len(ev) > HistoryLimit {
		t.Fatalf("restored history: %d events, %d bytes", len(ev), n)
	}
	if last := ev[len(ev)-1]; last.Index != 2*HistoryLimit+1 || len(last.Actor) > contract.MaxIDLength {
		t.Fatalf("newest restored event: index %d, actor of %d bytes", last.Index, len(last.Actor))
	}
}

// A plan that repeats endpoints of the newest plan shares their records
// with it, in memory only: a changed endpoint is its own, every stored
// endpoint is what was submitted, and a restored snapshot shares them
// again and writes the same bytes.
func TestPlansShareUnchangedEndpoints(t *testing.T) {
	h := newHarness(t)
	p1 := plan(weighted("a.dnsplan.test.", 1, 1), weighted("b.dnsplan.test.", 1, 1), weighted("c.dnsplan.test.", 1, 1))
	g1 := h.mustSubmit(p1)
	p2 := plan(weighted("a.dnsplan.test.", 1, 1), weighted("B.dnsplan.test.", 1, 1), weighted("c.dnsplan.test.", 2, 1))
	g2 := h.mustSubmit(p2)
	e1, e2 := h.s.Plan(g1).Endpoints, h.s.Plan(g2).Endpoints
	if e1[0] != e2[0] || e1[1] != e2[1] {
		t.Fatal("unchanged endpoints (one named in another case) are not shared")
	}
	if e1[2] == e2[2] || e2[2].Targets[0].Weight != 2 {
		t.Fatalf("a changed endpoint is shared: %v", e2[2])
	}

	b := marshal(t, h.s)
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Plan(g1).Endpoints[0] != r.Plan(g2).Endpoints[0] {
		t.Fatal("a restored state does not share unchanged endpoints")
	}
	if got := marshal(t, r); !bytes.Equal(got, b) {
		t.Fatal("restoring changed the snapshot's bytes")
	}
	for i, want := range p2.Endpoints {
		want = proto.CloneOf(want)
		want.Name = strings.ToLower(want.Name)
		if !proto.Equal(e2[i], want) {
			t.Fatalf("stored endpoint %d is %v, want %v", i, e2[i], want)
		}
	}
}
