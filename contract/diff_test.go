package contract

import (
	"testing"

	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func TestDiffPlans(t *testing.T) {
	ep := func(name string, ttl uint32, ts ...*pb.Target) *pb.EndpointPlan {
		return &pb.EndpointPlan{Name: name, Ttl: ttl, Targets: ts}
	}
	tg := func(id, addr string, w uint32) *pb.Target { return &pb.Target{Id: id, Address: addr, Weight: w} }
	from := &pb.Plan{Endpoints: []*pb.EndpointPlan{
		ep("api.dnsplan.test.", 30, tg("a", "192.0.2.1", 100), tg("b", "192.0.2.2", 100), tg("c", "2001:db8::1", 10)),
		ep("gone.dnsplan.test.", 30, tg("a", "192.0.2.9", 1)),
		ep("same.dnsplan.test.", 30, tg("a", "192.0.2.7", 1)),
	}}
	to := &pb.Plan{Endpoints: []*pb.EndpointPlan{
		// b drained, a doubled, a new address, the same AAAA under two
		// targets, the TTL changed, and the name in upper case.
		ep("API.dnsplan.test.", 60, tg("a", "192.0.2.1", 200), tg("b", "192.0.2.2", 0), tg("d", "192.0.2.3", 50),
			tg("c", "2001:db8::1", 5), tg("e", "2001:DB8::1", 5)),
		ep("new.dnsplan.test.", 30, tg("a", "2001:db8::9", 1)),
		ep("same.dnsplan.test.", 30, tg("a", "192.0.2.7", 1)),
	}}
	plus25 := 25.0
	zero := 0.0
	want := []*pb.EndpointDiff{
		{Endpoint: "api.dnsplan.test.", Change: ChangeChanged, Added: []string{"192.0.2.3"}, Removed: []string{"192.0.2.2"},
			Weights: []*pb.WeightChange{{Address: "192.0.2.1", From: 100, To: 200}}, AChangePercent: &plus25, AaaaChangePercent: &zero,
			TtlFrom: 30, TtlTo: 60},
		{Endpoint: "gone.dnsplan.test.", Change: ChangeRemoved}, // an apply leaves what it serves
		{Endpoint: "new.dnsplan.test.", Change: ChangeAdded, Added: []string{"2001:db8::9"}},
		{Endpoint: "same.dnsplan.test.", Change: ChangeUnchanged, AChangePercent: &zero},
	}
	got := DiffPlans(from, to)
	if len(got) != len(want) {
		t.Fatalf("%d endpoints, want %d: %v", len(got), len(want), got)
	}
	for i := range want {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("endpoint %d:\n got  %s\n want %s", i, prototext.Format(got[i]), prototext.Format(want[i]))
		}
	}
	if d := DiffPlans(nil, to); len(d) != 3 || d[0].Change != ChangeAdded {
		t.Errorf("from no plan: %v", d)
	}
}
