package cluster

import (
	"context"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// A node's refusals are gathered per caller, method and reason, bounded,
// and what could not be recorded comes back without growing the bound.
func TestRefusalLogBounded(t *testing.T) {
	var l refusalLog
	denied := fmt.Errorf("%w: no", ErrPermission)
	for range 3 {
		l.add("reader/a", "SetFreeze", contract.ReasonPermission, denied)
	}
	for i := range maxPendingRefusals + 10 {
		l.add(fmt.Sprintf("reader/r%03d", i), "SubmitPlan", contract.ReasonPermission, denied)
	}
	rs := l.take()
	if len(rs) != maxPendingRefusals+1 {
		t.Fatalf("%d refusals, want %d and the overflow", len(rs), maxPendingRefusals)
	}
	if first := rs[0]; first.Caller != "reader/a" || first.Count != 3 || first.ReasonCode != "PERMISSION" || first.Reason != denied.Error() {
		t.Errorf("first refusal %v", first)
	}
	if over := rs[len(rs)-1]; over.Caller != "" || over.Count != 11 {
		t.Errorf("overflow %v, want 11 refusals under no caller", over)
	}
	if again := l.take(); len(again) != 0 {
		t.Fatalf("take left %d refusals", len(again))
	}
	l.add("reader/a", "SetFreeze", contract.ReasonPermission, denied)
	l.putBack(rs)
	back := l.take()
	if len(back) != len(rs) || back[0].Count != 4 || back[len(back)-1].Count != 11 {
		t.Errorf("after putting back: %d refusals, first %v, last %v", len(back), back[0], back[len(back)-1])
	}
}

// RecordRefusals waits for every member's version to know the command.
func TestRecordRefusalsWaitsForMembers(t *testing.T) {
	c := newMemCore(t)
	svc := &clusterService{c: c}
	ctx := context.Background()
	req := &pb.RecordRefusalsRequest{NodeId: c.ID(), Refusals: []*pb.Refusal{{Caller: "reader/a", Method: "SetFreeze", ReasonCode: "PERMISSION", Count: 2}}}
	if _, err := c.propose(ctx, &statev1.SetMember{Id: "old", RaftAddr: "127.0.0.1:7009", GrpcAddr: "127.0.0.1:9009"}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RecordRefusals(ctx, req); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("with a member of an older version: %v, want FAILED_PRECONDITION", err)
	}
	if _, err := c.propose(ctx, &statev1.SetMember{Id: "old", RaftAddr: "127.0.0.1:7009", GrpcAddr: "127.0.0.1:9009", KnownCommands: uint32(fsm.LatestCommand)}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.RecordRefusals(ctx, req); err != nil {
		t.Fatalf("every member upgraded: %v", err)
	}
	var found bool
	c.read(func(s *fsm.State) {
		for _, ev := range s.History(0) {
			found = found || (ev.KindCode == pb.HistoryKind_HISTORY_KIND_REFUSED_CALL && ev.Caller == "reader/a" && ev.Count == 2)
		}
	})
	if !found {
		t.Fatal("the refusal is not in the history")
	}
}
