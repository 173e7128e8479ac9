package cluster

import (
	"context"
	"fmt"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// LEGACY: the old, unsafe apply and clean-up, served only by nodes started
// with --legacy (Config.Legacy), to demonstrate the AWS failure on the same
// cluster. The rules are in cluster/fsm/legacy.go; Apply refuses them
// unless the cluster was founded with the legacy design.
type legacyService struct {
	pb.UnimplementedLegacyServiceServer
	c core
}

func (l *legacyService) LegacyApply(ctx context.Context, req *pb.LegacyApplyRequest) (*pb.LegacyApplyResponse, error) {
	if err := requireFounded(l.c); err != nil {
		return nil, err
	}
	if _, err := l.c.propose(ctx, req); err != nil {
		return nil, err
	}
	return &pb.LegacyApplyResponse{}, nil
}

func (l *legacyService) LegacyCleanup(ctx context.Context, req *pb.LegacyCleanupRequest) (*pb.LegacyCleanupResponse, error) {
	if err := requireFounded(l.c); err != nil {
		return nil, err
	}
	res, err := l.c.propose(ctx, req)
	if err != nil {
		return nil, err
	}
	return &pb.LegacyCleanupResponse{Deleted: res.Deleted}, nil
}

// requireFounded answers UNAVAILABLE (retry) while the leader has not
// founded the cluster's policy yet: until then the state behaves as fixed
// and would refuse a legacy command that a moment later is accepted.
func requireFounded(c core) error {
	var founded bool
	c.read(func(s *fsm.State) { founded = s.Config() != nil })
	if !founded {
		return fmt.Errorf("%w: the leader has not founded the cluster's policy yet", fsm.ErrNotFounded)
	}
	return nil
}
