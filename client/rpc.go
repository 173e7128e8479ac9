package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Typed methods: one per unary RPC of the dnsplan.v1 API, each a Do with
// its failover and retry rules.

// SubmitPlan stores a new plan; the response carries its generation.
func (c *Client) SubmitPlan(ctx context.Context, req *pb.SubmitPlanRequest) (*pb.SubmitPlanResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.SubmitPlanResponse, error) {
		return pb.NewPlanServiceClient(cc).SubmitPlan(ctx, req)
	})
}

// GetPlan returns one stored plan.
func (c *Client) GetPlan(ctx context.Context, req *pb.GetPlanRequest) (*pb.Plan, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.Plan, error) {
		return pb.NewPlanServiceClient(cc).GetPlan(ctx, req)
	})
}

// ListPlans returns one page of the stored plans (see AllPlans).
func (c *Client) ListPlans(ctx context.Context, req *pb.ListPlansRequest) (*pb.ListPlansResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ListPlansResponse, error) {
		return pb.NewPlanServiceClient(cc).ListPlans(ctx, req)
	})
}

// DiffPlans compares two plans and judges the second by the rules an
// apply would meet now; it changes nothing.
func (c *Client) DiffPlans(ctx context.Context, req *pb.DiffPlansRequest) (*pb.PlanDiff, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.PlanDiff, error) {
		return pb.NewPlanServiceClient(cc).DiffPlans(ctx, req)
	})
}

// RollbackPlan stores a plan of the records endpoints served earlier.
func (c *Client) RollbackPlan(ctx context.Context, req *pb.RollbackPlanRequest) (*pb.RollbackPlanResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.RollbackPlanResponse, error) {
		return pb.NewPlanServiceClient(cc).RollbackPlan(ctx, req)
	})
}

// AcquireLease takes a lease, or fails with FailedPrecondition while
// another holder has it.
func (c *Client) AcquireLease(ctx context.Context, req *pb.AcquireLeaseRequest) (*pb.Lease, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.Lease, error) {
		return pb.NewLeaseServiceClient(cc).AcquireLease(ctx, req)
	})
}

// RenewLease extends a held lease.
func (c *Client) RenewLease(ctx context.Context, req *pb.RenewLeaseRequest) (*pb.Lease, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.Lease, error) {
		return pb.NewLeaseServiceClient(cc).RenewLease(ctx, req)
	})
}

// ReleaseLease gives a held lease up.
func (c *Client) ReleaseLease(ctx context.Context, req *pb.ReleaseLeaseRequest) (*pb.ReleaseLeaseResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ReleaseLeaseResponse, error) {
		return pb.NewLeaseServiceClient(cc).ReleaseLease(ctx, req)
	})
}

// ListLeases returns every lease, expired ones included.
func (c *Client) ListLeases(ctx context.Context, req *pb.ListLeasesRequest) (*pb.ListLeasesResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ListLeasesResponse, error) {
		return pb.NewLeaseServiceClient(cc).ListLeases(ctx, req)
	})
}

// ApplyPlan makes endpoints serve a plan's generation under a lease.
func (c *Client) ApplyPlan(ctx context.Context, req *pb.ApplyPlanRequest) (*pb.ApplyPlanResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ApplyPlanResponse, error) {
		return pb.NewEnactServiceClient(cc).ApplyPlan(ctx, req)
	})
}

// ReportDoubt tells the cluster what an enactor saw that should not
// happen; the cluster decides whether it freezes.
func (c *Client) ReportDoubt(ctx context.Context, req *pb.ReportDoubtRequest) (*pb.ReportDoubtResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ReportDoubtResponse, error) {
		return pb.NewEnactServiceClient(cc).ReportDoubt(ctx, req)
	})
}

// CleanupPlans deletes old plans that no endpoint serves.
func (c *Client) CleanupPlans(ctx context.Context, req *pb.CleanupPlansRequest) (*pb.CleanupPlansResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.CleanupPlansResponse, error) {
		return pb.NewEnactServiceClient(cc).CleanupPlans(ctx, req)
	})
}

// GetApplied returns what one endpoint serves.
func (c *Client) GetApplied(ctx context.Context, req *pb.GetAppliedRequest) (*pb.AppliedEndpoint, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.AppliedEndpoint, error) {
		return pb.NewEnactServiceClient(cc).GetApplied(ctx, req)
	})
}

// ListApplied returns one page of what the endpoints serve (see
// AllApplied).
func (c *Client) ListApplied(ctx context.Context, req *pb.ListAppliedRequest) (*pb.ListAppliedResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ListAppliedResponse, error) {
		return pb.NewEnactServiceClient(cc).ListApplied(ctx, req)
	})
}

// ListHistory returns the newest audit events.
func (c *Client) ListHistory(ctx context.Context, req *pb.ListHistoryRequest) (*pb.ListHistoryResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ListHistoryResponse, error) {
		return pb.NewEnactServiceClient(cc).ListHistory(ctx, req)
	})
}

// Status asks any node for its view of the cluster. Which node answers
// depends on failover; use StatusOf to ask a given one.
func (c *Client) Status(ctx context.Context) (*pb.StatusResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.StatusResponse, error) {
		return pb.NewClusterServiceClient(cc).Status(ctx, &pb.StatusRequest{})
	})
}

// StatusOf asks the node at addr (which need not be one given to New) for
// its status, once, with the per-call timeout and no failover: the answer
// must be that node's own view, or an error saying it did not give one.
func (c *Client) StatusOf(ctx context.Context, addr string) (*pb.StatusResponse, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.callTimeout)
	defer cancel()
	return pb.NewClusterServiceClient(cc).Status(ctx, &pb.StatusRequest{})
}

// GetAppliedOf asks the node at addr for its own replica's record of an
// endpoint (a stale read), once, with no failover: enactors use it to read
// back what each node serves.
func (c *Client) GetAppliedOf(ctx context.Context, addr, endpoint string) (*pb.AppliedEndpoint, error) {
	cc, err := c.conn(addr)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.opts.callTimeout)
	defer cancel()
	return pb.NewEnactServiceClient(cc).GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: endpoint, Stale: true})
}

// AddVoter adds a node to the cluster as a voter.
func (c *Client) AddVoter(ctx context.Context, req *pb.AddVoterRequest) (*pb.AddVoterResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.AddVoterResponse, error) {
		return pb.NewClusterServiceClient(cc).AddVoter(ctx, req)
	})
}

// RemoveServer removes a node from the cluster.
func (c *Client) RemoveServer(ctx context.Context, req *pb.RemoveServerRequest) (*pb.RemoveServerResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.RemoveServerResponse, error) {
		return pb.NewClusterServiceClient(cc).RemoveServer(ctx, req)
	})
}

// TransferLeadership hands leadership to another voter.
func (c *Client) TransferLeadership(ctx context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.TransferLeadershipResponse, error) {
		return pb.NewClusterServiceClient(cc).TransferLeadership(ctx, req)
	})
}

// SetFreeze turns the freeze switch on or off.
func (c *Client) SetFreeze(ctx context.Context, req *pb.SetFreezeRequest) (*pb.SetFreezeResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.SetFreezeResponse, error) {
		return pb.NewClusterServiceClient(cc).SetFreeze(ctx, req)
	})
}

// GetConfig reads the cluster's policy.
func (c *Client) GetConfig(ctx context.Context, req *pb.GetConfigRequest) (*pb.ClusterConfig, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ClusterConfig, error) {
		return pb.NewClusterServiceClient(cc).GetConfig(ctx, req)
	})
}

// SetConfig changes the cluster's policy (the fields that are set).
func (c *Client) SetConfig(ctx context.Context, req *pb.SetConfigRequest) (*pb.ClusterConfig, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.ClusterConfig, error) {
		return pb.NewClusterServiceClient(cc).SetConfig(ctx, req)
	})
}

// LegacyApply points one endpoint at a plan unconditionally: the old,
// unsafe apply, served only by nodes started with --legacy (a
// demonstration of the AWS failure; see docs/DESIGN.md section 7).
func (c *Client) LegacyApply(ctx context.Context, req *pb.LegacyApplyRequest) (*pb.LegacyApplyResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.LegacyApplyResponse, error) {
		return pb.NewLegacyServiceClient(cc).LegacyApply(ctx, req)
	})
}

// LegacyCleanup deletes plans by age alone, applied or not: the old,
// unsafe clean-up, served only by nodes started with --legacy.
func (c *Client) LegacyCleanup(ctx context.Context, req *pb.LegacyCleanupRequest) (*pb.LegacyCleanupResponse, error) {
	return Do(ctx, c, func(ctx context.Context, cc grpc.ClientConnInterface) (*pb.LegacyCleanupResponse, error) {
		return pb.NewLegacyServiceClient(cc).LegacyCleanup(ctx, req)
	})
}

// AllPlans returns every stored plan, oldest first, reading ListPlans page
// by page. Each page is its own read (linearizable unless stale), so a
// clean-up between two pages may have deleted plans of the first.
func (c *Client) AllPlans(ctx context.Context, stale bool) ([]*pb.Plan, error) {
	var out []*pb.Plan
	var from uint64
	for {
		resp, err := c.ListPlans(ctx, &pb.ListPlansRequest{Stale: stale, FromGeneration: from})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetPlans()...)
		next := resp.GetNextGeneration()
		if next == 0 {
			return out, nil
		}
		if next <= from {
			return nil, fmt.Errorf("client: ListPlans from generation %d answered next generation %d: no progress", from, next)
		}
		from = next
	}
}

// AllApplied returns what every endpoint serves, ordered by name, reading
// ListApplied page by page, each page its own read.
func (c *Client) AllApplied(ctx context.Context, stale bool) ([]*pb.AppliedEndpoint, error) {
	var out []*pb.AppliedEndpoint
	var from string
	for {
		resp, err := c.ListApplied(ctx, &pb.ListAppliedRequest{Stale: stale, FromEndpoint: from})
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetEndpoints()...)
		next := resp.GetNextEndpoint()
		if next == "" {
			return out, nil
		}
		if next <= from {
			return nil, fmt.Errorf("client: ListApplied from endpoint %q answered next endpoint %q: no progress", from, next)
		}
		from = next
	}
}
