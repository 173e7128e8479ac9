package cluster

import (
	"context"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// ReadIndex answers with the leader's commit index, under the same checks
// as a linearizable read (accessRead in the method table, and verifyLeader): the leader has
// finished its barrier in the current term and a quorum confirms it still
// leads. Every write acknowledged before the call was committed, so it is
// at or below the answer; a replica that has applied up to the answer
// holds every one of them. A node without a record of what it served
// learns its DNS floor this way (dns.go).
func (c *clusterService) ReadIndex(context.Context, *pb.ReadIndexRequest) (*pb.ReadIndexResponse, error) {
	return &pb.ReadIndexResponse{Index: c.n.raft.CommitIndex(), LeaderId: c.n.cfg.ID}, nil
}

// readIndex is ReadIndex for a caller inside the node.
func (n *Node) readIndex(ctx context.Context) (*pb.ReadIndexResponse, error) {
	req := &pb.ReadIndexRequest{}
	return call(ctx, n, pb.ClusterService_ReadIndex_FullMethodName, req, func(ctx context.Context) (*pb.ReadIndexResponse, error) {
		return (&clusterService{n: n}).ReadIndex(ctx, req)
	})
}
