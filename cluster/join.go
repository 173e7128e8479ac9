package cluster

import (
	"context"
	"time"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// joinLoop asks the member at Config.Join (which forwards to the leader) to
// add this node as a voter, until that succeeds or the node closes. Once
// added, the leader replicates the log or a snapshot to it.
func (n *Node) joinLoop() {
	conn, err := n.conn(n.cfg.Join)
	if err != nil {
		n.log.Error("join: bad address", "join", n.cfg.Join, "err", err)
		return
	}
	api := pb.NewClusterServiceClient(conn)
	req := &pb.AddVoterRequest{Id: n.cfg.ID, RaftAddr: n.cfg.AdvertiseRaft, GrpcAddr: n.AdvertiseGRPC(), LogVersion: fsm.LogVersion}
	delay := 200 * time.Millisecond
	for {
		ctx, cancel := n.callContext(3 * n.cfg.ApplyTimeout)
		_, err := api.AddVoter(ctx, req)
		cancel()
		if err == nil {
			n.log.Info("joined cluster", "via", n.cfg.Join)
			return
		}
		n.log.Warn("join: retrying", "via", n.cfg.Join, "err", err)
		select {
		case <-n.closing:
			return
		case <-time.After(delay):
		}
		delay = min(2*delay, 5*time.Second)
	}
}

// callContext bounds one call a background loop makes to the cluster: it
// ends after d, or as soon as the node starts closing, so Close never
// waits for a call to a cluster that does not answer.
func (n *Node) callContext(d time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	go func() {
		select {
		case <-n.closing:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}
