package cluster

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"sort"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// enactService is the EnactService API: applies and clean-ups through
// the log, what is applied and the audit history from the local replica.
type enactService struct {
	pb.UnimplementedEnactServiceServer
	c       core
	watches *watchHub
}

func (e *enactService) ApplyPlan(ctx context.Context, req *pb.ApplyPlanRequest) (*pb.ApplyPlanResponse, error) {
	res, err := e.c.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.ApplyPlanResponse{Results: res.Endpoints}, nil
}

func (e *enactService) CleanupPlans(ctx context.Context, req *pb.CleanupPlansRequest) (*pb.CleanupPlansResponse, error) {
	res, err := e.c.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.CleanupPlansResponse{Deleted: res.Deleted}, nil
}

// ReportDoubt proposes an enactor's report of doubt once every member's
// version applies it; the state machine decides whether it freezes.
func (e *enactService) ReportDoubt(ctx context.Context, req *pb.ReportDoubtRequest) (*pb.ReportDoubtResponse, error) {
	if err := requireLog(e.c, fsm.LogEnactorDoubt, "takes reports of doubt"); err != nil {
		return nil, err
	}
	res, err := e.c.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	resp := &pb.ReportDoubtResponse{Frozen: res.Frozen}
	if res.Frozen {
		e.c.read(func(s *fsm.State) { _, resp.Reason = s.Frozen() })
	}
	return resp, nil
}

func (e *enactService) GetApplied(_ context.Context, req *pb.GetAppliedRequest) (*pb.AppliedEndpoint, error) {
	var a *pb.AppliedEndpoint
	e.c.read(func(s *fsm.State) { a = s.Applied(req.GetEndpoint()) })
	if a == nil {
		return nil, fmt.Errorf("%w: endpoint %q has nothing applied", fsm.ErrNotFound, req.GetEndpoint())
	}
	return a, nil
}

func (e *enactService) ListApplied(_ context.Context, req *pb.ListAppliedRequest) (*pb.ListAppliedResponse, error) {
	var from string
	if req.GetFromEndpoint() != "" {
		from = contract.CanonicalName(req.GetFromEndpoint())
	}
	var applied []*pb.AppliedEndpoint
	e.c.read(func(s *fsm.State) { applied = s.AppliedAll() })
	applied = applied[sort.Search(len(applied), func(i int) bool { return applied[i].GetEndpoint() >= from }):]
	resp := &pb.ListAppliedResponse{}
	n := page(applied, req.GetLimit())
	resp.Endpoints = applied[:n]
	if n < len(applied) {
		resp.NextEndpoint = applied[n].GetEndpoint()
	}
	return resp, nil
}

func (e *enactService) ListHistory(_ context.Context, req *pb.ListHistoryRequest) (*pb.ListHistoryResponse, error) {
	resp := &pb.ListHistoryResponse{}
	q := fsm.HistoryQuery{Endpoint: req.GetEndpoint(), Limit: int(req.GetLimit())}
	if req.GetSince() != nil {
		q.Since = req.GetSince().AsTime()
	}
	e.c.read(func(s *fsm.State) {
		if req.GetWithin() != nil {
			if t := s.Now().Add(-req.GetWithin().AsDuration()); t.After(q.Since) {
				q.Since = t
			}
		}
		resp.Events = s.Events(q)
	})
	return resp, nil
}

// WatchApplied streams from the local replica, ordered by revision.
func (e *enactService) WatchApplied(req *pb.WatchAppliedRequest, stream pb.EnactService_WatchAppliedServer) error {
	next := req.GetFromRevision()
	return e.watches.serve(stream, "applied", func(s *fsm.State) []any {
		var changed []*pb.AppliedEndpoint
		for _, a := range s.AppliedAll() {
			if a.Revision >= next {
				changed = append(changed, a)
			}
		}
		slices.SortFunc(changed, func(a, b *pb.AppliedEndpoint) int { return cmp.Compare(a.Revision, b.Revision) })
		msgs := make([]any, 0, len(changed))
		for _, a := range changed {
			msgs = append(msgs, &pb.WatchAppliedResponse{Endpoint: a})
			next = a.Revision + 1
		}
		return msgs
	})
}
