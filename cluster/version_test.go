package cluster

import (
	"context"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// What is newer than a member's log version waits until every member
// knows it: an older member would apply it by ignoring what it does not
// know, and the replicas would diverge.
func TestNewLogWaitsForMembers(t *testing.T) {
	plan := &pb.Plan{PlannerId: "p", Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test.", Ttl: 30,
		Targets: []*pb.Target{{Id: "lb-1", Address: "192.0.2.1", Weight: 1}}}}}
	for _, tc := range []struct {
		name    string
		version uint32 // the newest version the call needs
		call    func(context.Context, core) error
	}{
		{"RecordRefusals", fsm.LogRefusals, func(ctx context.Context, c core) error {
			_, err := (&clusterService{c: c}).RecordRefusals(ctx, &pb.RecordRefusalsRequest{NodeId: c.ID(),
				Refusals: []*pb.Refusal{{Caller: "reader/a", Method: "SetFreeze", ReasonCode: "PERMISSION", Count: 2}}})
			return err
		}},
		{"SubmitPlan expecting a parent", fsm.LogReviewed, func(ctx context.Context, c core) error {
			_, err := (&planService{c: c}).SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan, ExpectedParent: proto.Uint64(0)})
			return err
		}},
		{"SubmitPlan expecting a digest", fsm.LogReviewed, func(ctx context.Context, c core) error {
			_, err := (&planService{c: c}).SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: plan, ExpectedDigest: contract.PlanDigest(plan)})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMemCore(t)
			ctx := context.Background()
			member := func(v uint32) {
				if _, err := c.propose(ctx, &statev1.SetMember{Id: "n9", RaftAddr: "127.0.0.1:7009", GrpcAddr: "127.0.0.1:9009", LogVersion: v}); err != nil {
					t.Fatal(err)
				}
			}
			member(tc.version - 1)
			if err := tc.call(ctx, c); status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("with a member of version %d: %v, want FAILED_PRECONDITION", tc.version-1, err)
			}
			member(tc.version)
			if err := tc.call(ctx, c); status.Code(err) == codes.FailedPrecondition && fsm.Reason(err) == "" {
				t.Fatalf("every member knows version %d: %v", tc.version, err)
			}
		})
	}
}
