package integration

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Apply what was reviewed, through a real cluster (through a follower,
// so the checks hold on a forwarded call): a submission expecting a parent
// that moved, or carrying another plan than the reviewed digest, stores
// nothing; the stored plan carries the digest the contract defines.
func TestReviewedSubmission(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{})
	f := (c.Leader() + 1) % 3
	cl, err := client.New([]string{c.GRPCAddrs[f]}, client.WithLogger(c.Log))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	plan := func(weight uint32) *pb.Plan {
		return &pb.Plan{PlannerId: "ops", Endpoints: []*pb.EndpointPlan{{Name: endpoint, Ttl: 30,
			Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: weight}, {Id: "lb-2", Address: "192.0.2.2", Weight: 1}}}}}
	}
	first, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan(1), ExpectedParent: proto.Uint64(0)})
	if err != nil {
		t.Fatalf("first plan, expecting none before it: %v", err)
	}
	reviewed := plan(2)
	digest := contract.PlanDigest(reviewed)
	for _, tc := range []struct {
		what   string
		req    *pb.SubmitPlanRequest
		reason contract.Reason
	}{
		{"expecting no plan", &pb.SubmitPlanRequest{Plan: reviewed, ExpectedParent: proto.Uint64(0)}, contract.ReasonParentMoved},
		{"expecting a plan not stored", &pb.SubmitPlanRequest{Plan: reviewed, ExpectedParent: proto.Uint64(first.Generation + 1)}, contract.ReasonParentMoved},
		{"another plan than reviewed", &pb.SubmitPlanRequest{Plan: plan(3), ExpectedParent: proto.Uint64(first.Generation), ExpectedDigest: digest}, contract.ReasonDigest},
	} {
		_, err := cl.SubmitPlan(ctx, tc.req)
		if status.Code(err) != codes.FailedPrecondition || client.Reason(err) != tc.reason {
			t.Errorf("%s: %v (reason %q), want FAILED_PRECONDITION / %s", tc.what, err, client.Reason(err), tc.reason)
		}
	}
	second, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: reviewed, ExpectedParent: proto.Uint64(first.Generation), ExpectedDigest: digest})
	if err != nil || second.Generation != first.Generation+1 {
		t.Fatalf("the reviewed plan on its parent: %v, %v", second, err)
	}
	got, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: second.Generation})
	if err != nil || got.GetDigest() != digest {
		t.Fatalf("stored digest %q (%v), want %s", got.GetDigest(), err, digest)
	}
}
