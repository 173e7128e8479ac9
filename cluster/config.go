package cluster

import (
	"context"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// foundingConfig is the policy this node founds a new cluster with, from
// its own configuration (the node flags).
func (n *Node) foundingConfig() *pb.ClusterConfig {
	design := pb.Design_DESIGN_FIXED
	if n.cfg.Legacy {
		design = pb.Design_DESIGN_LEGACY
	}
	return &pb.ClusterConfig{
		Design:          design,
		MaxCapacityDrop: n.cfg.MaxCapacityDrop,
		VelocityWindow:  durationpb.New(n.cfg.VelocityWindow),
	}
}

// foundPolicy makes sure the cluster has a policy: a ready leader whose
// state has none proposes the founding config from its own flags. Two
// leaders in quick succession may both propose; the first applied wins and
// the second changes nothing (fsm.foundCluster).
func (n *Node) foundPolicy(ctx context.Context) error {
	var founded bool
	n.machine.read(func(s *fsm.State) { founded = s.Config() != nil })
	if founded {
		return nil
	}
	res, err := n.propose(ctx, fsm.CommandFoundCluster, n.foundingConfig())
	if err != nil {
		return err
	}
	n.log.Info("founded the cluster's policy", "design", fsm.DesignName(res.Config.GetDesign()),
		"max_capacity_drop", res.Config.GetMaxCapacityDrop(), "velocity_window", res.Config.GetVelocityWindow().AsDuration())
	return nil
}
