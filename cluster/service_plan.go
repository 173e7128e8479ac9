package cluster

import (
	"context"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// planService is the PlanService API: plans are submitted through the
// log and read from the local replica.
type planService struct {
	pb.UnimplementedPlanServiceServer
	c       core
	watches *watchHub
}

func (p *planService) SubmitPlan(ctx context.Context, req *pb.SubmitPlanRequest) (*pb.SubmitPlanResponse, error) {
	if req.ExpectedParent != nil || req.GetExpectedDigest() != "" {
		// A member that predates these fields would store the plan
		// regardless, and replicas would diverge.
		var ready bool
		p.c.read(func(s *fsm.State) { ready = s.MembersKnow(fsm.LogReviewed) })
		if !ready {
			return nil, status.Error(codes.FailedPrecondition, "not every member's version checks expected_parent and expected_digest yet: upgrade every member first")
		}
	}
	res, err := p.c.propose(ctx, &statev1.SubmitPlan{
		Plan: req.GetPlan(), Force: req.GetForce(),
		LeaseName: req.GetLeaseName(), LeaseToken: req.GetLeaseToken(),
		ExpectedParent: req.ExpectedParent, ExpectedDigest: req.GetExpectedDigest(),
	})
	if err != nil {
		return nil, err
	}
	return &pb.SubmitPlanResponse{Generation: res.Generation}, nil
}

func (p *planService) GetPlan(_ context.Context, req *pb.GetPlanRequest) (*pb.Plan, error) {
	var plan *pb.Plan
	p.c.read(func(s *fsm.State) {
		if req.GetNewest() {
			plan = s.NewestPlan()
		} else {
			plan = s.Plan(req.GetGeneration())
		}
	})
	if plan == nil && req.GetNewest() {
		return nil, fmt.Errorf("%w: no plan is stored", fsm.ErrNotFound)
	}
	if plan == nil {
		return nil, fmt.Errorf("%w: generation %d is unknown or deleted", fsm.ErrNotFound, req.GetGeneration())
	}
	return plan, nil
}

func (p *planService) ListPlans(_ context.Context, req *pb.ListPlansRequest) (*pb.ListPlansResponse, error) {
	var plans []*pb.Plan
	p.c.read(func(s *fsm.State) { plans = s.PlansFrom(req.GetFromGeneration()) })
	resp := &pb.ListPlansResponse{}
	n := page(plans, req.GetLimit())
	resp.Plans = plans[:n]
	if n < len(plans) {
		resp.NextGeneration = plans[n].GetGeneration()
	}
	return resp, nil
}

// WatchPlans streams from the local replica: every node can serve it, and
// a client that loses its node resumes on another from the next generation.
func (p *planService) WatchPlans(req *pb.WatchPlansRequest, stream pb.PlanService_WatchPlansServer) error {
	next := max(req.GetFromGeneration(), 1)
	return p.watches.serve(stream, "plans", func(s *fsm.State) []any {
		var msgs []any
		for _, plan := range s.PlansFrom(next) {
			msgs = append(msgs, &pb.WatchPlansResponse{Plan: plan})
			next = plan.Generation + 1
		}
		return msgs
	})
}
