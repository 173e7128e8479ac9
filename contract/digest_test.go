package contract

import (
	"strings"
	"testing"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

func digestPlan() *pb.Plan {
	return &pb.Plan{PlannerId: "p1", Generation: 7, Endpoints: []*pb.EndpointPlan{
		{Name: "v6.dnsplan.test.", Ttl: 60, Targets: []*pb.Target{{Id: "lb-c", Address: "2001:db8::1", Weight: 10}}},
		{Name: "api.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{
			{Id: "lb-b", Address: "192.0.2.11", Weight: 0}, {Id: "lb-a", Address: "192.0.2.10", Weight: 100}}},
	}}
}

// The digest is part of the contract: other programs compute it from
// docs/CONTRACT.md, so its value for a given plan never changes. The
// value below is sha256sum of the documented text:
//
//	printf 'api.dnsplan.test. 30\n\t4:lb-a 192.0.2.10 100\n\t4:lb-b 192.0.2.11 0\nv6.dnsplan.test. 60\n\t4:lb-c 2001:db8::1 10\n' | sha256sum
func TestPlanDigestIsStable(t *testing.T) {
	const want = "sha256:c99c169145a1c49f17165a63f902fec3214b8d2341912b10fefa7a1e79504234"
	if got := PlanDigest(digestPlan()); got != want {
		t.Fatalf("PlanDigest = %s, want %s", got, want)
	}
}

// What does not change the records does not change the digest; what does,
// does.
func TestPlanDigestCanonical(t *testing.T) {
	base := PlanDigest(digestPlan())
	same := digestPlan()
	same.PlannerId, same.Generation, same.Forced = "other", 9, true
	same.Endpoints[0].Name = "V6.DNSPLAN.test."
	same.Endpoints[0].Targets[0].Address = "2001:DB8:0::1"
	same.Endpoints[1].Targets[0], same.Endpoints[1].Targets[1] = same.Endpoints[1].Targets[1], same.Endpoints[1].Targets[0]
	same.Endpoints[0], same.Endpoints[1] = same.Endpoints[1], same.Endpoints[0]
	if got := PlanDigest(same); got != base {
		t.Errorf("reordered, recased, other metadata: %s, want %s", got, base)
	}
	for name, change := range map[string]func(*pb.Plan){
		"weight":  func(p *pb.Plan) { p.Endpoints[1].Targets[1].Weight = 0 },
		"address": func(p *pb.Plan) { p.Endpoints[1].Targets[0].Address = "192.0.2.12" },
		"ttl":     func(p *pb.Plan) { p.Endpoints[0].Ttl = 61 },
		"target":  func(p *pb.Plan) { p.Endpoints[0].Targets = nil },
		"name":    func(p *pb.Plan) { p.Endpoints[0].Name = "v7.dnsplan.test." },
		"minimum": func(p *pb.Plan) { p.Endpoints[0].MinHealthyTargets = 1 },
		"share":   func(p *pb.Plan) { p.Endpoints[0].MinHealthyFraction = 0.5 },
	} {
		p := digestPlan()
		change(p)
		if PlanDigest(p) == base {
			t.Errorf("a change of %s keeps the digest", name)
		}
	}
	if err := ValidateDigest(base); err != nil {
		t.Errorf("ValidateDigest(%s): %v", base, err)
	}
	for _, bad := range []string{"", "sha256:", "md5:" + strings.Repeat("a", 64), "sha256:" + strings.Repeat("A", 64), base + "0"} {
		if ValidateDigest(bad) == nil {
			t.Errorf("ValidateDigest(%q) accepted", bad)
		}
	}
}

// Target ids may hold any byte: an id holding what reads as another
// target's line must not give a plan with other records the same digest.
func TestPlanDigestIdsCannotForge(t *testing.T) {
	one := &pb.Plan{Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{
		{Id: "a", Address: "192.0.2.1", Weight: 1}, {Id: "b", Address: "192.0.2.2", Weight: 1}}}}}
	forged := &pb.Plan{Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{
		{Id: "a 192.0.2.1 1\n\tb", Address: "192.0.2.2", Weight: 1}}}}}
	if PlanDigest(one) == PlanDigest(forged) {
		t.Fatal("a target id reproduced another plan's canonical text")
	}
}
