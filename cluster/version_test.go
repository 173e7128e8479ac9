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

// What needs a log version waits until the cluster activated it: until
// then an older member would apply it by ignoring what it does not know,
// and the replicas would diverge.
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
		{"RollbackPlan", fsm.LogRollback, func(ctx context.Context, c core) error {
			_, err := (&planService{c: c}).RollbackPlan(ctx, &pb.RollbackPlanRequest{})
			return err
		}},
		{"SetConfig of max_plan_change", fsm.LogDoubt, func(ctx context.Context, c core) error {
			_, err := (&clusterService{c: c}).SetConfig(ctx, &pb.SetConfigRequest{MaxPlanChange: proto.Float64(0.5)})
			return err
		}},
		{"SubmitPlan with a minimum healthy", fsm.LogMinHealthy, func(ctx context.Context, c core) error {
			p := proto.CloneOf(plan)
			p.Endpoints[0].MinHealthyTargets = 1
			_, err := (&planService{c: c}).SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: p})
			return err
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newMemCore(t)
			ctx := context.Background()
			activate := func(v uint32) {
				if _, err := c.propose(ctx, &statev1.ActivateLog{Version: v}); err != nil {
					t.Fatal(err)
				}
			}
			if tc.version > 1 {
				activate(tc.version - 1)
			}
			if err := tc.call(ctx, c); status.Code(err) != codes.FailedPrecondition {
				t.Fatalf("at log version %d: %v, want FAILED_PRECONDITION", tc.version-1, err)
			}
			activate(tc.version)
			if err := tc.call(ctx, c); status.Code(err) == codes.FailedPrecondition && fsm.Reason(err) == "" {
				t.Fatalf("at log version %d: %v", tc.version, err)
			}
		})
	}
}
