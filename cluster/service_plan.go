package cluster

import (
	"context"
	"fmt"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
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
		if err := requireLog(p.c, fsm.LogReviewed, "checks expected_parent and expected_digest"); err != nil {
			return nil, err
		}
	}
	if req.GetDelta() != nil {
		if err := requireLog(p.c, fsm.LogDeltas, "stores deltas"); err != nil {
			return nil, err
		}
	}
	for _, ep := range req.GetPlan().GetEndpoints() {
		if ep.GetMinHealthyTargets() > 0 || ep.GetMinHealthyFraction() > 0 {
			if err := requireLog(p.c, fsm.LogMinHealthy, "checks minimum healthy"); err != nil {
				return nil, err
			}
			break
		}
	}
	res, err := p.c.propose(ctx, &statev1.SubmitPlan{
		Plan: req.GetPlan(), Force: req.GetForce(),
		LeaseName: req.GetLeaseName(), LeaseToken: req.GetLeaseToken(),
		ExpectedParent: req.ExpectedParent, ExpectedDigest: req.GetExpectedDigest(),
		Delta: req.GetDelta(),
	})
	if err != nil {
		return nil, err
	}
	return &pb.SubmitPlanResponse{Generation: res.Generation, Frozen: res.Doubt != "", FreezeReason: res.Doubt}, nil
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

// RollbackPlan stores a plan of earlier records, once every member's
// version knows the command.
func (p *planService) RollbackPlan(ctx context.Context, req *pb.RollbackPlanRequest) (*pb.RollbackPlanResponse, error) {
	if err := requireLog(p.c, fsm.LogRollback, "rolls back"); err != nil {
		return nil, err
	}
	res, err := p.c.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.RollbackPlanResponse{Generation: res.Generation, Kept: res.Kept}, nil
}

// maxDiffEntries bounds each list of an endpoint's diff in a DiffPlans
// answer: with unchanged endpoints left out and ok rules carrying no
// words, the answer of the largest plan stays far below the message
// limit.
const maxDiffEntries = 64

// DiffPlans compares two plans and judges the second by the rules, on
// one reading of the replica: the plans, the served records and the time
// they are judged against belong to one state.
func (p *planService) DiffPlans(_ context.Context, req *pb.DiffPlansRequest) (*pb.PlanDiff, error) {
	var (
		from, to *pb.Plan
		resp     = &pb.PlanDiff{}
		err      error
	)
	p.c.read(func(s *fsm.State) {
		resp.NewestGeneration = s.NewestGeneration()
		if g := req.GetFromGeneration(); g != 0 {
			if from = s.Plan(g); from == nil {
				err = fmt.Errorf("%w: generation %d is unknown or deleted", fsm.ErrNotFound, g)
				return
			}
		} else {
			from = s.NewestPlan()
		}
		to = req.GetPlan()
		if g := req.GetToGeneration(); g != 0 {
			if to = s.Plan(g); to == nil {
				err = fmt.Errorf("%w: generation %d is unknown or deleted", fsm.ErrNotFound, g)
				return
			}
		}
		if req.GetPlan() != nil && !req.GetForce() {
			resp.Doubt = s.DoubtPlan(to)
		}
		for _, d := range contract.DiffPlans(from, to) {
			if d.Change == contract.ChangeUnchanged {
				resp.Unchanged++
				continue
			}
			contract.BoundDiff(d, maxDiffEntries)
			resp.Endpoints = append(resp.Endpoints, d)
		}
		if req.GetForce() || to.GetForced() {
			return
		}
		byName := map[string]*pb.EndpointPlan{}
		for _, ep := range to.GetEndpoints() {
			byName[contract.CanonicalName(ep.GetName())] = ep
		}
		for _, d := range resp.Endpoints {
			if ep := byName[d.Endpoint]; ep != nil {
				d.Rules = s.Judge(ep)
			}
		}
	})
	if err != nil {
		return nil, err
	}
	resp.FromGeneration, resp.ToGeneration = from.GetGeneration(), to.GetGeneration()
	if from != nil {
		resp.FromDigest = from.GetDigest()
	}
	resp.ToDigest = to.GetDigest()
	if req.GetPlan() != nil { // not stored: no generation, the digest it would get
		resp.ToGeneration, resp.ToDigest = 0, contract.PlanDigest(to)
	}
	return resp, nil
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
