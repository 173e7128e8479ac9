package cluster

import (
	"context"
	"fmt"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// verifyLeader makes a read on the leader linearizable; see
// checkLinearizable and cluster/DESIGN.md, "Linearizable reads".
func (n *Node) verifyLeader() error {
	return checkLinearizable(n.raft, n.readyTerm.Load)
}

// leaderView is the part of *raft.Raft the linearizable-read check needs.
type leaderView interface {
	CurrentTerm() uint64
	State() raft.RaftState
	VerifyLeader() raft.Future
}

// checkLinearizable lets a read be served from this node's state when
// every write acknowledged before the read began is in it. The term is
// read once, as T. (1) The barrier of term T is done (readyTerm == T), so
// every entry of earlier terms is applied, and every write this node
// acknowledged in T was applied before its acknowledgement. (2) A quorum
// then confirms this node leads (VerifyLeader). (3) The term is still T
// and the node still leads: terms only grow, so (2) confirmed leadership
// in T itself, not in a later term whose barrier is not done. A write
// acknowledged by another leader needs a quorum in a term above T, which
// would intersect the quorum of (2), so none was acknowledged before (2).
// Without (3), a node that lost leadership and won it again between (1)
// and (2) could serve a state missing writes of the term in between.
func checkLinearizable(r leaderView, readyTerm func() uint64) error {
	term := r.CurrentTerm()
	if readyTerm() != term {
		return fmt.Errorf("%w: leader is still catching up", ErrNotLeader)
	}
	if err := r.VerifyLeader().Error(); err != nil {
		return raftError(err)
	}
	if r.CurrentTerm() != term || r.State() != raft.Leader {
		return fmt.Errorf("%w: leadership changed during the read check", ErrNotLeader)
	}
	return nil
}

// leader returns the current leader's id and gRPC address as far as this
// node knows; either may be empty.
func (n *Node) leader() (id, grpcAddr string) {
	if n.etcd != nil {
		return "", ""
	}
	_, lid := n.raft.LeaderWithID()
	if lid == "" {
		return "", ""
	}
	id = string(lid)
	if id == n.cfg.ID {
		return id, n.AdvertiseGRPC()
	}
	n.machine.read(func(s *fsm.State) {
		if m, ok := s.Member(id); ok {
			grpcAddr = m.GRPCAddr
		}
	})
	return id, grpcAddr
}

// notLeader is the error for a request this node cannot take to the
// leader. The interceptor adds the leader hint for clients.
func (n *Node) notLeader() error {
	id, addr := n.leader()
	if id == "" {
		return fmt.Errorf("%w: no leader known", ErrNotLeader)
	}
	if addr == "" {
		return fmt.Errorf("%w: leader is %s, its address is not known yet", ErrNotLeader, id)
	}
	return fmt.Errorf("%w: leader is %s at %s", ErrNotLeader, id, addr)
}

// leaderHint sets the leader's gRPC address as a trailer on UNAVAILABLE
// answers, for clients that follow it.
func (n *Node) leaderHint(ctx context.Context) {
	if _, addr := n.leader(); addr != "" {
		_ = grpc.SetTrailer(ctx, metadata.Pairs(contract.LeaderTrailer, addr))
	}
}

// inConfig returns a server of the Raft configuration by id.
func (n *Node) inConfig(id string) (raft.Server, bool, error) {
	f := n.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Server{}, false, raftError(err)
	}
	for _, s := range f.Configuration().Servers {
		if string(s.ID) == id {
			return s, true, nil
		}
	}
	return raft.Server{}, false, nil
}

// addVoter adds (or confirms) a voter on the leader and records its
// addresses in the state. It is idempotent, so nodes call it for
// themselves to register their gRPC address.
func (n *Node) addVoter(ctx context.Context, id, raftAddr, grpcAddr string) error {
	req := &pb.AddVoterRequest{Id: id, RaftAddr: raftAddr, GrpcAddr: grpcAddr, LogVersion: fsm.LogVersion}
	_, err := call(ctx, n, pb.ClusterService_AddVoter_FullMethodName, req, func(ctx context.Context) (*pb.AddVoterResponse, error) {
		return (&clusterService{c: n}).AddVoter(ctx, req)
	})
	return err
}

// readIndex is ReadIndex for a caller inside the node.
func (n *Node) readIndex(ctx context.Context) (*pb.ReadIndexResponse, error) {
	req := &pb.ReadIndexRequest{}
	return call(ctx, n, pb.ClusterService_ReadIndex_FullMethodName, req, func(ctx context.Context) (*pb.ReadIndexResponse, error) {
		return (&clusterService{c: n}).ReadIndex(ctx, req)
	})
}
