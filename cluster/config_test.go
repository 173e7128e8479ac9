package cluster

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Hole 13: a fixed cluster with one --legacy member that becomes leader
// ran the unsafe rules. The design is the cluster's, founded by its first
// leader; Apply refuses legacy commands whatever node leads.
func TestFixedClusterRefusesLegacyLeader(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) { cfg.Legacy = cfg.ID == "n3" })
	c.start("n1")
	c.start("n2")
	founder := c.leader()
	var design pb.Design
	founder.State(func(s *fsm.State) { design = s.Config().GetDesign() })
	if design != pb.Design_DESIGN_FIXED {
		t.Fatalf("founded design %v, want fixed", design)
	}
	ctx := ctxT(t)
	a := c.api(founder.ID())
	g, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 10)})
	if err != nil {
		t.Fatal(err)
	}
	rogue := c.start("n3")
	waitFor(t, 10*time.Second, "n3 to catch up", func() bool {
		var n uint64
		rogue.State(func(s *fsm.State) { n = s.NextGeneration() })
		return n > g.Generation
	})
	if _, err := a.cluster.TransferLeadership(ctx, &pb.TransferLeadershipRequest{Id: "n3"}); err != nil {
		t.Fatal(err)
	}
	if l := c.leader(); l != rogue {
		t.Fatalf("leader is %s, want n3", l.ID())
	}
	_, err = pb.NewLegacyServiceClient(c.api("n3").conn).LegacyApply(ctx, &pb.LegacyApplyRequest{Generation: g.Generation, Endpoint: "api.dnsplan.test.", EnactorId: "rogue"})
	if status.Code(err) != codes.FailedPrecondition || client.Reason(err) != "design" {
		t.Fatalf("legacy apply through a --legacy leader of a fixed cluster = %v, want FAILED_PRECONDITION, reason design", err)
	}
	for _, id := range []string{"n1", "n2", "n3"} {
		var a *pb.AppliedEndpoint
		c.node(id).State(func(s *fsm.State) { a = s.Applied("api.dnsplan.test.") })
		if a != nil {
			t.Fatalf("%s: the refused legacy apply changed the state: %v", id, a)
		}
	}
}
