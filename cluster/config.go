package cluster

import (
	"context"
	"fmt"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The cluster's policy (cluster/DESIGN.md, "Cluster policy"): founded by
// the first ready leader from its own flags, then the cluster's. A node's
// flags say only what a new cluster is founded with; a node whose design
// disagrees with its cluster's stops, one whose velocity flags disagree
// says that the cluster's values win.

// foundingConfig is the policy this node founds a new cluster with, from
// its own configuration (the node flags).
func (n *Node) foundingConfig() *pb.ClusterConfig {
	return &pb.ClusterConfig{
		Design:              n.design(),
		MaxCapacityDrop:     *n.cfg.MaxCapacityDrop,
		VelocityWindow:      durationpb.New(n.cfg.VelocityWindow),
		MaxPlanChange:       proto.Float64(n.cfg.MaxPlanChange),
		MaxVelocityRefusals: proto.Uint32(*n.cfg.MaxVelocityRefusals),
		MaxReadBackFailures: proto.Float64(n.cfg.MaxReadBackFailures),
	}
}

// design is the design this node was started with.
func (n *Node) design() pb.Design {
	if n.cfg.Legacy {
		return pb.Design_DESIGN_LEGACY
	}
	return pb.Design_DESIGN_FIXED
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
	res, err := n.propose(ctx, n.foundingConfig())
	if err != nil {
		return err
	}
	n.log.Info("founded the cluster's policy", "design", contract.DesignOf(res.Config.GetDesign()),
		"max_capacity_drop", res.Config.GetMaxCapacityDrop(), "velocity_window", res.Config.GetVelocityWindow().AsDuration())
	return nil
}

// checkPolicy compares the cluster's policy, as this node's replica knows
// it, with the node's own flags: a different design is an error (the node
// must not run), different velocity settings a warning, given once per
// policy seen (warned remembers the last one).
func (n *Node) checkPolicy(warned **pb.ClusterConfig) error {
	var c *pb.ClusterConfig
	n.machine.read(func(s *fsm.State) { c = s.Config() })
	if c == nil {
		return nil
	}
	if c.GetDesign() != n.design() {
		flag := func(d pb.Design) string {
			if d == pb.Design_DESIGN_LEGACY {
				return "with --legacy"
			}
			return "without --legacy"
		}
		return fmt.Errorf("%w: this node was started %s, but the cluster was founded with the %s design, which never changes; start it %s",
			ErrDesignMismatch, flag(n.design()), contract.DesignOf(c.GetDesign()), flag(c.GetDesign()))
	}
	if *warned != nil && proto.Equal(*warned, c) {
		return nil
	}
	*warned = c
	if d := *n.cfg.MaxCapacityDrop; d != c.GetMaxCapacityDrop() {
		n.log.Warn("--max-capacity-drop differs from the cluster's; the cluster's value wins (change it with: dnsplan ctl config set max-capacity-drop VALUE)",
			"flag", d, "cluster", c.GetMaxCapacityDrop())
	}
	if m := n.cfg.MaxPlanChange; c.MaxPlanChange != nil && m != c.GetMaxPlanChange() {
		n.log.Warn("--max-plan-change differs from the cluster's; the cluster's value wins (change it with: dnsplan ctl config set max-plan-change VALUE)",
			"flag", m, "cluster", c.GetMaxPlanChange())
	}
	if m := n.cfg.MaxReadBackFailures; c.MaxReadBackFailures != nil && m != c.GetMaxReadBackFailures() {
		n.log.Warn("--max-read-back-failures differs from the cluster's; the cluster's value wins (change it with: dnsplan ctl config set max-read-back-failures VALUE)",
			"flag", m, "cluster", c.GetMaxReadBackFailures())
	}
	if w := n.cfg.VelocityWindow; w != c.GetVelocityWindow().AsDuration() {
		n.log.Warn("--velocity-window differs from the cluster's; the cluster's value wins (change it with: dnsplan ctl config set velocity-window DURATION)",
			"flag", w, "cluster", c.GetVelocityWindow().AsDuration())
	}
	return nil
}

// policyLoop stops the node as soon as its replica shows a design other
// than its own: a node that learns the cluster's policy only after it
// started (joining, or an empty data dir) cannot check it in Start.
func (n *Node) policyLoop(warned *pb.ClusterConfig) {
	for {
		ch, _ := n.machine.changed()
		if err := n.checkPolicy(&warned); err != nil {
			n.fail(err)
			return
		}
		select {
		case <-ch:
		case <-n.closing:
			return
		}
	}
}

// fail stops the node because it must not run: the error is delivered on
// Fatal and the node closes itself (in its own goroutine, since Close
// waits for the background loops, one of which is calling fail).
func (n *Node) fail(err error) {
	n.failOnce.Do(func() {
		n.log.Error("stopping the node", "err", err)
		n.fatal <- err
		go n.Close()
	})
}

// Fatal delivers the error that made the node stop itself (a design that
// disagrees with the cluster's); the node is closed or closing by then. A
// process running a node waits on it besides its own signals and exits
// non-zero with the error.
func (n *Node) Fatal() <-chan error { return n.fatal }
