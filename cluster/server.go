package cluster

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// maxRequestBytes is the server's send and receive limit, the same as
// every client's (contract.MaxMessageBytes): an oversize plan reaches
// validation and gets INVALID_ARGUMENT with a clear message; beyond it
// gRPC itself answers RESOURCE_EXHAUSTED.
const maxRequestBytes = contract.MaxMessageBytes

// The largest valid plan must fit every message limit with room to spare
// (the stored plan's generation and time, a stream's envelope): this
// fails to compile if contract.MaxPlanBytes grows past half the limit.
const _ uint = maxRequestBytes - 2*contract.MaxPlanBytes

// gRPC keepalive of the server (see startGRPC).
const (
	keepaliveTime    = 30 * time.Second
	keepaliveTimeout = 10 * time.Second
	keepaliveMinTime = 10 * time.Second
)

func (n *Node) startGRPC() error {
	lis := n.cfg.GRPCListener
	if lis == nil {
		var err error
		if lis, err = net.Listen("tcp", n.cfg.GRPCAddr); err != nil {
			return fmt.Errorf("cluster: grpc listen: %w", err)
		}
	}
	conns := newConnTracker(lis)
	n.grpcLis = conns
	s := grpc.NewServer(
		grpc.MaxRecvMsgSize(maxRequestBytes),
		grpc.MaxSendMsgSize(maxRequestBytes),
		// Close connections whose peer is gone or frozen: the server pings
		// a connection quiet for keepaliveTime and drops it if no answer
		// comes within keepaliveTimeout. Clients may ping too, but not
		// more often than keepaliveMinTime.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: keepaliveTime, Timeout: keepaliveTimeout}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
		// Errors outermost, so that every refusal, the table's included,
		// is mapped to its code.
		grpc.ChainUnaryInterceptor(n.unaryErrors, n.route),
		grpc.ChainStreamInterceptor(streamErrors, routeStream),
	)
	registerServices(s, n, newWatchHub(n, conns), n.cfg.Legacy)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(s, hs)
	reflection.Register(s)
	n.grpc = s
	n.goLoop(func() {
		if err := s.Serve(conns); err != nil {
			n.log.Error("grpc server stopped", "err", err)
		}
	})
	return nil
}

// registerServices registers the API's services on s; every method they
// have is in the method table (TestMethodTable).
func registerServices(s *grpc.Server, n *Node, watches *watchHub, legacy bool) {
	pb.RegisterPlanServiceServer(s, &planService{n: n, watches: watches})
	pb.RegisterLeaseServiceServer(s, &leaseService{n: n})
	pb.RegisterEnactServiceServer(s, &enactService{n: n, watches: watches})
	pb.RegisterClusterServiceServer(s, &clusterService{n: n})
	if legacy {
		pb.RegisterLegacyServiceServer(s, &legacyService{n: n})
	}
}

type planService struct {
	pb.UnimplementedPlanServiceServer
	n       *Node
	watches *watchHub
}

func (p *planService) SubmitPlan(ctx context.Context, req *pb.SubmitPlanRequest) (*pb.SubmitPlanResponse, error) {
	res, err := p.n.propose(ctx, &statev1.SubmitPlan{
		Plan: req.GetPlan(), Force: req.GetForce(),
		LeaseName: req.GetLeaseName(), LeaseToken: req.GetLeaseToken(),
	})
	if err != nil {
		return nil, err
	}
	return &pb.SubmitPlanResponse{Generation: res.Generation}, nil
}

func (p *planService) GetPlan(_ context.Context, req *pb.GetPlanRequest) (*pb.Plan, error) {
	var plan *pb.Plan
	p.n.machine.read(func(s *fsm.State) {
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
	p.n.machine.read(func(s *fsm.State) { plans = s.PlansFrom(req.GetFromGeneration()) })
	resp := &pb.ListPlansResponse{}
	n := page(plans, req.GetLimit())
	resp.Plans = plans[:n]
	if n < len(plans) {
		resp.NextGeneration = plans[n].GetGeneration()
	}
	return resp, nil
}

// One page of a list answer (ListPlans, ListApplied) holds at most
// listPageMax items and, unless it holds a single item, at most
// listPageBytes encoded: half the message limit, so a page never nears it,
// and a single item of the largest valid size (below half the limit, see
// above) always fits.
const (
	listPageMax   = 1000
	listPageBytes = maxRequestBytes / 2
)

// page returns how many of items, from the first, make one page.
func page[M proto.Message](items []M, limit uint32) int {
	most := listPageMax
	if limit > 0 && limit < listPageMax {
		most = int(limit)
	}
	size := 0
	for i, m := range items {
		size += proto.Size(m)
		if i == most || (i > 0 && size > listPageBytes) {
			return i
		}
	}
	return len(items)
}

type leaseService struct {
	pb.UnimplementedLeaseServiceServer
	n *Node
}

func (l *leaseService) AcquireLease(ctx context.Context, req *pb.AcquireLeaseRequest) (*pb.Lease, error) {
	res, err := l.n.propose(ctx, req)
	return res.Lease, err
}

func (l *leaseService) RenewLease(ctx context.Context, req *pb.RenewLeaseRequest) (*pb.Lease, error) {
	res, err := l.n.propose(ctx, req)
	return res.Lease, err
}

func (l *leaseService) ReleaseLease(ctx context.Context, req *pb.ReleaseLeaseRequest) (*pb.ReleaseLeaseResponse, error) {
	if _, err := l.n.propose(ctx, req); err != nil {
		return nil, err
	}
	return &pb.ReleaseLeaseResponse{}, nil
}

func (l *leaseService) ListLeases(context.Context, *pb.ListLeasesRequest) (*pb.ListLeasesResponse, error) {
	resp := &pb.ListLeasesResponse{}
	l.n.machine.read(func(s *fsm.State) { resp.Leases = s.Leases() })
	return resp, nil
}

type enactService struct {
	pb.UnimplementedEnactServiceServer
	n       *Node
	watches *watchHub
}

func (e *enactService) ApplyPlan(ctx context.Context, req *pb.ApplyPlanRequest) (*pb.ApplyPlanResponse, error) {
	res, err := e.n.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.ApplyPlanResponse{Results: res.Endpoints}, nil
}

func (e *enactService) CleanupPlans(ctx context.Context, req *pb.CleanupPlansRequest) (*pb.CleanupPlansResponse, error) {
	res, err := e.n.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.CleanupPlansResponse{Deleted: res.Deleted}, nil
}

func (e *enactService) GetApplied(_ context.Context, req *pb.GetAppliedRequest) (*pb.AppliedEndpoint, error) {
	var a *pb.AppliedEndpoint
	e.n.machine.read(func(s *fsm.State) { a = s.Applied(req.GetEndpoint()) })
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
	e.n.machine.read(func(s *fsm.State) { applied = s.AppliedAll() })
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
	e.n.machine.read(func(s *fsm.State) { resp.Events = s.History(int(req.GetLimit())) })
	return resp, nil
}

type clusterService struct {
	pb.UnimplementedClusterServiceServer
	n *Node
}

// Status always answers from this node: it says what this node sees.
func (c *clusterService) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return c.n.Status()
}

// Status reports this node's view of the cluster.
func (n *Node) Status() (*pb.StatusResponse, error) {
	r := n.raft
	leaderID, leaderAddr := n.leader()
	resp := &pb.StatusResponse{
		NodeId:         n.cfg.ID,
		State:          r.State().String(),
		LeaderId:       leaderID,
		LeaderGrpcAddr: leaderAddr,
		Term:           r.CurrentTerm(),
		CommitIndex:    r.CommitIndex(),
		AppliedIndex:   r.AppliedIndex(),
		Legacy:         n.cfg.Legacy,
	}
	n.dnsStatus(resp)
	if idx, ok := r.Stats()["last_snapshot_index"]; ok {
		fmt.Sscan(idx, &resp.LastSnapshotIndex)
	}
	f := r.GetConfiguration()
	if err := f.Error(); err != nil {
		return nil, raftError(err)
	}
	n.machine.read(func(s *fsm.State) {
		resp.Frozen, resp.FreezeReason = s.Frozen()
		resp.Config = s.Config()
		resp.NextGeneration = s.NextGeneration()
		resp.Plans = uint32(s.NumPlans())
		resp.Endpoints = uint32(s.NumApplied())
		for _, srv := range f.Configuration().Servers {
			m := &pb.Member{
				Id:       string(srv.ID),
				RaftAddr: string(srv.Address),
				Voter:    srv.Suffrage == raft.Voter,
				Leader:   string(srv.ID) == leaderID,
			}
			if rec, ok := s.Member(m.Id); ok {
				m.GrpcAddr = rec.GRPCAddr
			}
			resp.Members = append(resp.Members, m)
		}
	})
	return resp, nil
}

func (c *clusterService) AddVoter(ctx context.Context, req *pb.AddVoterRequest) (*pb.AddVoterResponse, error) {
	n := c.n
	srv, ok, err := n.inConfig(req.Id)
	if err != nil {
		return nil, err
	}
	if !ok || srv.Suffrage != raft.Voter || string(srv.Address) != req.RaftAddr {
		n.log.Info("adding voter", "id", req.Id, "raft_addr", req.RaftAddr)
		if err := n.raft.AddVoter(raft.ServerID(req.Id), raft.ServerAddress(req.RaftAddr), 0, timeoutOf(ctx, n.cfg.ApplyTimeout)).Error(); err != nil {
			return nil, raftError(err)
		}
	}
	var rec fsm.Member
	var known bool
	n.machine.read(func(s *fsm.State) { rec, known = s.Member(req.Id) })
	if !known || rec.RaftAddr != req.RaftAddr || rec.GRPCAddr != req.GrpcAddr {
		if _, err := n.propose(ctx, &statev1.SetMember{Id: req.Id, RaftAddr: req.RaftAddr, GrpcAddr: req.GrpcAddr}); err != nil {
			return nil, err
		}
	}
	return &pb.AddVoterResponse{}, nil
}

// addVoter adds (or confirms) a voter on the leader and records its
// addresses in the state. It is idempotent, so nodes call it for
// themselves to register their gRPC address.
func (n *Node) addVoter(ctx context.Context, id, raftAddr, grpcAddr string) error {
	req := &pb.AddVoterRequest{Id: id, RaftAddr: raftAddr, GrpcAddr: grpcAddr}
	_, err := call(ctx, n, pb.ClusterService_AddVoter_FullMethodName, req, func(ctx context.Context) (*pb.AddVoterResponse, error) {
		return (&clusterService{n: n}).AddVoter(ctx, req)
	})
	return err
}

func (c *clusterService) RemoveServer(ctx context.Context, req *pb.RemoveServerRequest) (*pb.RemoveServerResponse, error) {
	n := c.n
	if _, ok, err := n.inConfig(req.Id); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: no member %q", fsm.ErrNotFound, req.Id)
	}
	// Forget the addresses first: a leader removing itself cannot propose
	// anything afterwards.
	if _, err := n.propose(ctx, &statev1.RemoveMember{Id: req.Id}); err != nil {
		return nil, err
	}
	n.log.Info("removing server", "id", req.Id)
	if err := n.raft.RemoveServer(raft.ServerID(req.Id), 0, timeoutOf(ctx, n.cfg.ApplyTimeout)).Error(); err != nil {
		return nil, raftError(err)
	}
	return &pb.RemoveServerResponse{}, nil
}

func (c *clusterService) TransferLeadership(ctx context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	n := c.n
	var f raft.Future
	if req.Id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		srv, ok, err := n.inConfig(req.Id)
		if err != nil {
			return nil, err
		}
		if !ok || srv.Suffrage != raft.Voter {
			return nil, fmt.Errorf("%w: no voter %q", fsm.ErrNotFound, req.Id)
		}
		if req.Id == n.cfg.ID {
			return &pb.TransferLeadershipResponse{LeaderId: n.cfg.ID}, nil
		}
		f = n.raft.LeadershipTransferToServer(srv.ID, srv.Address)
	}
	if err := f.Error(); err != nil {
		return nil, raftError(err)
	}
	// Report who leads now, once a new leader is known.
	deadline := time.Now().Add(timeoutOf(ctx, n.cfg.ApplyTimeout))
	for time.Now().Before(deadline) {
		if _, id := n.raft.LeaderWithID(); id != "" && string(id) != n.cfg.ID {
			return &pb.TransferLeadershipResponse{LeaderId: string(id)}, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &pb.TransferLeadershipResponse{}, nil
}

func (c *clusterService) SetFreeze(ctx context.Context, req *pb.SetFreezeRequest) (*pb.SetFreezeResponse, error) {
	res, err := c.n.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.SetFreezeResponse{Frozen: res.Frozen}, nil
}

// timeoutOf is the time left before ctx's deadline, or def.
func timeoutOf(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return time.Until(d)
	}
	return def
}
