package cluster

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Through the real gRPC API, on the leader and on a follower, a 1 MiB
// string in any request is refused with INVALID_ARGUMENT, the answer does
// not quote it, and nothing of it reaches any node's audit history.
func TestHugeStringsRefusedAtTheEdge(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	c.startAll()
	l := c.leader()
	c.waitAddresses()
	ctx := ctxT(t)
	lease, err := c.api(l.ID()).leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/0", Holder: "az-a", Ttl: ttl(60e9)})
	if err != nil {
		t.Fatal(err)
	}
	huge := strings.Repeat("x", 1<<20)
	calls := []struct {
		name string
		call func(context.Context, api) error
	}{
		{"renew, holder", func(ctx context.Context, a api) error {
			_, err := a.leases.RenewLease(ctx, &pb.RenewLeaseRequest{Name: lease.Name, Holder: huge, Token: lease.Token})
			return err
		}},
		{"renew, lease name", func(ctx context.Context, a api) error {
			_, err := a.leases.RenewLease(ctx, &pb.RenewLeaseRequest{Name: huge, Holder: lease.Holder, Token: lease.Token})
			return err
		}},
		{"release, holder", func(ctx context.Context, a api) error {
			_, err := a.leases.ReleaseLease(ctx, &pb.ReleaseLeaseRequest{Name: lease.Name, Holder: huge, Token: lease.Token})
			return err
		}},
		{"release, lease name", func(ctx context.Context, a api) error {
			_, err := a.leases.ReleaseLease(ctx, &pb.ReleaseLeaseRequest{Name: huge, Holder: lease.Holder, Token: lease.Token})
			return err
		}},
		{"acquire, holder", func(ctx context.Context, a api) error {
			_, err := a.leases.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: "enactor/1", Holder: huge, Ttl: ttl(60e9)})
			return err
		}},
		{"submit, lease name", func(ctx context.Context, a api) error {
			_, err := a.plans.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: samplePlan("api.dnsplan.test.", 1), LeaseName: huge, LeaseToken: 1})
			return err
		}},
		{"apply, enactor id", func(ctx context.Context, a api) error {
			_, err := a.enact.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: 1, LeaseName: lease.Name, LeaseToken: lease.Token, EnactorId: huge})
			return err
		}},
		{"freeze, reason", func(ctx context.Context, a api) error {
			_, err := a.cluster.SetFreeze(ctx, &pb.SetFreezeRequest{Frozen: true, Reason: huge})
			return err
		}},
		{"transfer leadership, id", func(ctx context.Context, a api) error {
			_, err := a.cluster.TransferLeadership(ctx, &pb.TransferLeadershipRequest{Id: huge})
			return err
		}},
		{"remove server, id", func(ctx context.Context, a api) error {
			_, err := a.cluster.RemoveServer(ctx, &pb.RemoveServerRequest{Id: huge})
			return err
		}},
		{"add voter, raft address", func(ctx context.Context, a api) error {
			_, err := a.cluster.AddVoter(ctx, &pb.AddVoterRequest{Id: "n9", RaftAddr: huge, GrpcAddr: "127.0.0.1:1"})
			return err
		}},
		{"add voter, id", func(ctx context.Context, a api) error {
			_, err := a.cluster.AddVoter(ctx, &pb.AddVoterRequest{Id: huge, RaftAddr: "127.0.0.1:1", GrpcAddr: "127.0.0.1:2"})
			return err
		}},
	}
	nodes := map[string]api{"leader": c.api(l.ID()), "follower": c.api(c.follower().ID())}
	for _, tc := range calls {
		for via, a := range nodes {
			err := tc.call(ctx, a)
			st := status.Convert(err)
			if st.Code() != codes.InvalidArgument {
				t.Fatalf("%s through the %s: %s (message of %d bytes), want InvalidArgument", tc.name, via, st.Code(), len(st.Message()))
			}
			if len(st.Message()) > 1024 {
				t.Fatalf("%s through the %s: the message is %d bytes: it quotes the input", tc.name, via, len(st.Message()))
			}
		}
	}
	for _, id := range c.order {
		n := c.node(id)
		var size int
		var frozen bool
		var members int
		n.State(func(s *fsm.State) {
			for _, ev := range s.History(0) {
				size += proto.Size(ev)
			}
			frozen, _ = s.Frozen()
			members = len(s.Members())
		})
		if size > 64<<10 || frozen || members != 3 {
			t.Fatalf("%s after the refusals: history of %d bytes, frozen %v, %d members", id, size, frozen, members)
		}
	}
}
