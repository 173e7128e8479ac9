package cluster

import (
	"context"

	"google.golang.org/grpc"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// ReadIndex answers with the leader's commit index, under the same checks
// as a linearizable read (see read and verifyLeader): the leader has
// finished its barrier in the current term and a quorum confirms it still
// leads. Every write acknowledged before the call was committed, so it is
// at or below the answer; a replica that has applied up to the answer
// holds every one of them. A node without a record of what it served
// learns its DNS floor this way (dns.go).
func (c *clusterService) ReadIndex(ctx context.Context, req *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
	return c.n.readIndex(ctx, req)
}

func (n *Node) readIndex(ctx context.Context, req *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
	return read(ctx, n, false, req, func(context.Context, *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
		return &pb.ReadIndexResponse{Index: n.raft.CommitIndex(), LeaderId: n.cfg.ID}, nil
	}, func(ctx context.Context, c grpc.ClientConnInterface, req *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
		return pb.NewClusterServiceClient(c).ReadIndex(ctx, req)
	})
}
