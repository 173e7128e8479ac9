package cluster

import (
	"context"
	"time"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
)

// activationLoop raises the cluster's active log version (fsm/version.go):
// the ready leader proposes ActivateLog for its own version once every
// server of the Raft configuration registered a version that applies it.
// Until then nothing newer takes effect anywhere, so a rolling upgrade
// never has replicas applying one entry two ways.
func (n *Node) activationLoop() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-tick.C:
		}
		if !n.IsLeader() || n.readyTerm.Load() != n.raft.CurrentTerm() {
			continue
		}
		if v, due := n.activationDue(); due {
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ApplyTimeout)
			_, err := n.propose(ctx, &statev1.ActivateLog{Version: v})
			cancel()
			if err != nil {
				n.log.Debug("activating log version", "version", v, "err", err)
				continue
			}
			n.log.Info("log version active: every member applies it", "version", v)
		}
	}
}

// activationDue says whether this node's log version is above the
// cluster's and every server of the configuration registered it.
func (n *Node) activationDue() (uint32, bool) {
	f := n.raft.GetConfiguration()
	if f.Error() != nil {
		return 0, false
	}
	ids := make([]string, 0, len(f.Configuration().Servers))
	for _, s := range f.Configuration().Servers {
		ids = append(ids, string(s.ID))
	}
	var due bool
	n.machine.read(func(s *fsm.State) {
		due = s.LogVersion() < fsm.LogVersion && s.MembersKnow(fsm.LogVersion, ids)
	})
	return fsm.LogVersion, due
}
