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

// clusterService is the ClusterService API: status, membership,
// leadership, freeze and the cluster's policy.
type clusterService struct {
	pb.UnimplementedClusterServiceServer
	c core
}

// Status always answers from this node: it says what this node sees.
func (c *clusterService) Status(context.Context, *pb.StatusRequest) (*pb.StatusResponse, error) {
	return c.c.Status()
}

func (c *clusterService) AddVoter(ctx context.Context, req *pb.AddVoterRequest) (*pb.AddVoterResponse, error) {
	// A node whose version predates the cluster's active log version
	// would apply the log differently: it may not join. A node says its
	// version; 0 from a client (ctl add-voter) says nothing, so only a
	// node's own request (with TLS, a node certificate) is held to it.
	var active uint32
	c.c.read(func(s *fsm.State) { active = s.LogVersion() })
	if req.LogVersion < active && (req.LogVersion != 0 || callerIsNode(ctx)) {
		return nil, status.Errorf(codes.FailedPrecondition, "node %s applies log version %d, the cluster runs at %d: upgrade it before it joins",
			req.Id, req.LogVersion, active)
	}
	if err := c.c.ensureVoter(ctx, req.Id, req.RaftAddr); err != nil {
		return nil, err
	}
	var rec fsm.Member
	var known bool
	c.c.read(func(s *fsm.State) { rec, known = s.Member(req.Id) })
	// A node reports its log version itself; an operator adding a node for
	// it (log_version 0) leaves what the node reported.
	version := req.LogVersion
	if version == 0 {
		version = rec.LogVersion
	}
	if !known || rec.RaftAddr != req.RaftAddr || rec.GRPCAddr != req.GrpcAddr || rec.LogVersion != version {
		if _, err := c.c.propose(ctx, &statev1.SetMember{Id: req.Id, RaftAddr: req.RaftAddr, GrpcAddr: req.GrpcAddr, LogVersion: version}); err != nil {
			return nil, err
		}
	}
	return &pb.AddVoterResponse{}, nil
}

// requireLog refuses, FAILED_PRECONDITION, what needs log version v
// before the cluster activated it: until every member's version applies
// it, an older member would apply it by ignoring what it does not know
// (cluster/DESIGN.md, "Rolling upgrades"). what says what the version does.
func requireLog(c core, v uint32, what string) error {
	var active uint32
	c.read(func(s *fsm.State) { active = s.LogVersion() })
	if active < v {
		return status.Errorf(codes.FailedPrecondition, "the cluster %s from log version %d on, and runs at %d: upgrade every member, and the leader activates it", what, v, active)
	}
	return nil
}

// RecordRefusals records the calls a node refused, once every member's
// version knows the command (cluster/DESIGN.md, "Rolling upgrades"):
// until then the refusing node keeps them.
func (c *clusterService) RecordRefusals(ctx context.Context, req *pb.RecordRefusalsRequest) (*pb.RecordRefusalsResponse, error) {
	if err := requireLog(c.c, fsm.LogRefusals, "records refused calls"); err != nil {
		return nil, err
	}
	if _, err := c.c.propose(ctx, req); err != nil {
		return nil, err
	}
	return &pb.RecordRefusalsResponse{}, nil
}

func (c *clusterService) RemoveServer(ctx context.Context, req *pb.RemoveServerRequest) (*pb.RemoveServerResponse, error) {
	if ok, err := c.c.hasMember(req.Id); err != nil {
		return nil, err
	} else if !ok {
		return nil, fmt.Errorf("%w: no member %q", fsm.ErrNotFound, req.Id)
	}
	// Forget the addresses first: a leader removing itself cannot propose
	// anything afterwards.
	if _, err := c.c.propose(ctx, &statev1.RemoveMember{Id: req.Id}); err != nil {
		return nil, err
	}
	if err := c.c.removeMember(ctx, req.Id); err != nil {
		return nil, err
	}
	return &pb.RemoveServerResponse{}, nil
}

func (c *clusterService) TransferLeadership(ctx context.Context, req *pb.TransferLeadershipRequest) (*pb.TransferLeadershipResponse, error) {
	id, err := c.c.transferLeadership(ctx, req.Id)
	if err != nil {
		return nil, err
	}
	return &pb.TransferLeadershipResponse{LeaderId: id}, nil
}

func (c *clusterService) SetFreeze(ctx context.Context, req *pb.SetFreezeRequest) (*pb.SetFreezeResponse, error) {
	res, err := c.c.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.SetFreezeResponse{Frozen: res.Frozen}, nil
}

func (c *clusterService) GetConfig(context.Context, *pb.GetConfigRequest) (*pb.ClusterConfig, error) {
	var cfg *pb.ClusterConfig
	c.c.read(func(s *fsm.State) { cfg = s.Policy() })
	return cfg, nil
}

// SetConfig changes the cluster's velocity settings. The design has no
// field to set: it is fixed at founding.
func (c *clusterService) SetConfig(ctx context.Context, req *pb.SetConfigRequest) (*pb.ClusterConfig, error) {
	if req.MaxPlanChange != nil {
		if err := requireLog(c.c, fsm.LogDoubt, "freezes on doubt"); err != nil {
			return nil, err
		}
	}
	if req.MaxVelocityRefusals != nil {
		if err := requireLog(c.c, fsm.LogVelocityDoubt, "freezes on repeated velocity refusals"); err != nil {
			return nil, err
		}
	}
	if req.MaxReadBackFailures != nil {
		if err := requireLog(c.c, fsm.LogEnactorDoubt, "freezes on read-back failures"); err != nil {
			return nil, err
		}
	}
	res, err := c.c.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	c.c.logger().Info("cluster policy changed", "max_capacity_drop", res.Config.GetMaxCapacityDrop(),
		"velocity_window", res.Config.GetVelocityWindow().AsDuration(), "max_plan_change", res.Config.MaxPlanChange)
	return res.Config, nil
}

// ReadIndex answers with the leader's commit index, under the same checks
// as a linearizable read (accessRead in the method table, and verifyLeader): the leader has
// finished its barrier in the current term and a quorum confirms it still
// leads. Every write acknowledged before the call was committed, so it is
// at or below the answer; a replica that has applied up to the answer
// holds every one of them. A node without a record of what it served
// learns its DNS floor this way (dns.go).
func (c *clusterService) ReadIndex(context.Context, *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
	return &pb.ReadIndexResponse{Index: c.c.commitIndex(), LeaderId: c.c.ID()}, nil
}
