package cluster

import (
	"context"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// leaseService is the LeaseService API: fenced leases, every change
// through the log.
type leaseService struct {
	pb.UnimplementedLeaseServiceServer
	c core
}

func (l *leaseService) AcquireLease(ctx context.Context, req *pb.AcquireLeaseRequest) (*pb.Lease, error) {
	res, err := l.c.propose(ctx, req)
	return res.Lease, err
}

func (l *leaseService) RenewLease(ctx context.Context, req *pb.RenewLeaseRequest) (*pb.Lease, error) {
	res, err := l.c.propose(ctx, req)
	return res.Lease, err
}

func (l *leaseService) ReleaseLease(ctx context.Context, req *pb.ReleaseLeaseRequest) (*pb.ReleaseLeaseResponse, error) {
	if _, err := l.c.propose(ctx, req); err != nil {
		return nil, err
	}
	return &pb.ReleaseLeaseResponse{}, nil
}

func (l *leaseService) ListLeases(context.Context, *pb.ListLeasesRequest) (*pb.ListLeasesResponse, error) {
	resp := &pb.ListLeasesResponse{}
	l.c.read(func(s *fsm.State) { resp.Leases = s.Leases() })
	return resp, nil
}
