package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster/etcdlog"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// core is the node as the gRPC services (service_*.go, watch.go) see it: a
// replicated state machine with a membership. *Node is the core on either
// store, Raft's log or etcd's (etcd.go); the services know nothing of
// either, so their behaviour is tested against a core with no log behind
// it (services_test.go) and the same API runs on both. The method table
// and its interceptor (methods.go), which decide where a call runs (here,
// or forwarded to the Raft leader), run before a service is called.
type core interface {
	// ID is this node's member id.
	ID() string
	// propose commits a command and returns the state machine's result
	// for it (its rejection as the error).
	propose(ctx context.Context, payload proto.Message) (fsm.Result, error)
	// read runs f on the local replica under its read lock; f must not
	// block or keep the state.
	read(f func(*fsm.State))
	// changed returns a channel closed at the replica's next change, and
	// the index it has applied now.
	changed() (<-chan struct{}, uint64)
	// done is closed when the node starts closing.
	done() <-chan struct{}
	logger() *slog.Logger

	// Status is this node's view of the cluster.
	Status() (*pb.StatusResponse, error)
	// commitIndex is the log index known committed (ReadIndex answers it
	// once the method table has confirmed this node leads).
	commitIndex() uint64
	// leaderContact says whether this node leads and, if not, when it
	// last heard from a leader and which it knows ("" for none).
	leaderContact() (leads bool, last time.Time, leaderID string)

	// hasMember reports whether id is in the cluster's configuration.
	hasMember(id string) (bool, error)
	// ensureVoter makes id a voter at raftAddr (nothing if it is one).
	ensureVoter(ctx context.Context, id, raftAddr string) error
	// removeMember removes id from the configuration.
	removeMember(ctx context.Context, id string) error
	// transferLeadership hands leadership to id (any voter if empty) and
	// returns the new leader once known ("" if none is known in time).
	transferLeadership(ctx context.Context, id string) (string, error)
}

var _ core = (*Node)(nil)

func (n *Node) read(f func(*fsm.State))            { n.machine.read(f) }
func (n *Node) changed() (<-chan struct{}, uint64) { return n.machine.changed() }
func (n *Node) done() <-chan struct{}              { return n.closing }
func (n *Node) logger() *slog.Logger               { return n.log }

// commitIndex is Raft's commit index, or on etcd the newest linearizable
// revision read (the barrier of the call that asks has just read it).
func (n *Node) commitIndex() uint64 {
	if n.etcd != nil {
		return uint64(n.etcd.linearizable.Load())
	}
	return n.raft.CommitIndex()
}

// leaderContact on etcd: no node leads; "contact" is the last answer of an
// etcd quorum, so a node cut off from etcd ends its watches as a Raft
// follower cut off from its leader does.
func (n *Node) leaderContact() (bool, time.Time, string) {
	if n.etcd != nil {
		return false, time.Unix(0, n.etcd.contact.Load()), ""
	}
	if n.raft.State() == raft.Leader {
		return true, time.Time{}, n.cfg.ID
	}
	id, _ := n.leader()
	return false, n.raft.LastContact(), id
}

// hasMember on etcd asks the registry (a fresh read, not the refreshed
// copy): the members are the nodes registered there.
func (n *Node) hasMember(id string) (bool, error) {
	if n.etcd != nil {
		ms, err := n.etcd.log.Members(n.etcd.ctx)
		if err != nil {
			return false, err
		}
		return slices.ContainsFunc(ms, func(m etcdlog.Member) bool { return m.ID == id }), nil
	}
	_, ok, err := n.inConfig(id)
	return ok, err
}

func (n *Node) ensureVoter(ctx context.Context, id, raftAddr string) error {
	if n.etcd != nil {
		return errNoLeaderOnEtcd("add-voter")
	}
	srv, ok, err := n.inConfig(id)
	if err != nil {
		return err
	}
	if ok && srv.Suffrage == raft.Voter && string(srv.Address) == raftAddr {
		return nil
	}
	n.log.Info("adding voter", "id", id, "raft_addr", raftAddr)
	if err := n.await(n.raft.AddVoter(raft.ServerID(id), raft.ServerAddress(raftAddr), 0, timeoutOf(ctx, n.cfg.ApplyTimeout))); err != nil {
		return raftError(err)
	}
	return nil
}

// removeMember on etcd removes id's registration (cluster/DESIGN.md,
// "Membership"): a node that died leaves the registry at once instead of
// one TTL later; a node still running registers again.
func (n *Node) removeMember(ctx context.Context, id string) error {
	if n.etcd != nil {
		n.log.Info("removing a registration from the etcd registry", "id", id)
		found, err := n.etcd.log.Unregister(ctx, id)
		if err != nil {
			return err
		}
		if !found {
			return fmt.Errorf("%w: no member %q", fsm.ErrNotFound, id)
		}
		_ = n.refreshMembers() // Status catches up within a second anyway
		return nil
	}
	n.log.Info("removing server", "id", id)
	if err := n.await(n.raft.RemoveServer(raft.ServerID(id), 0, timeoutOf(ctx, n.cfg.ApplyTimeout))); err != nil {
		return raftError(err)
	}
	return nil
}

func (n *Node) transferLeadership(ctx context.Context, id string) (string, error) {
	if n.etcd != nil {
		return "", errNoLeaderOnEtcd("transfer-leader")
	}
	var f raft.Future
	if id == "" {
		f = n.raft.LeadershipTransfer()
	} else {
		srv, ok, err := n.inConfig(id)
		if err != nil {
			return "", err
		}
		if !ok || srv.Suffrage != raft.Voter {
			return "", fmt.Errorf("%w: no voter %q", fsm.ErrNotFound, id)
		}
		if id == n.cfg.ID {
			return n.cfg.ID, nil
		}
		f = n.raft.LeadershipTransferToServer(srv.ID, srv.Address)
	}
	if err := n.await(f); err != nil {
		return "", raftError(err)
	}
	// Report who leads now, once a new leader is known.
	deadline := time.Now().Add(timeoutOf(ctx, n.cfg.ApplyTimeout))
	for time.Now().Before(deadline) {
		if _, lid := n.raft.LeaderWithID(); lid != "" && string(lid) != n.cfg.ID {
			return string(lid), nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return "", nil
}

// Status reports this node's view of the cluster.
func (n *Node) Status() (*pb.StatusResponse, error) {
	if n.etcd != nil {
		return n.etcdStatus()
	}
	r := n.raft
	leaderID, leaderAddr := n.leader()
	resp := &pb.StatusResponse{
		Store:          string(StoreRaft),
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
		resp.LogVersion, resp.NodeLogVersion = s.LogVersion(), fsm.LogVersion
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
				m.GrpcAddr, m.LogVersion = rec.GRPCAddr, rec.LogVersion
			}
			resp.Members = append(resp.Members, m)
		}
	})
	return resp, nil
}
