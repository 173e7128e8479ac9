package chaos

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/local"
	"github.com/dnsplan/dnsplan/contract"
)

// clusterSize is the number of founding nodes: three, the smallest
// cluster that survives the loss of one. An add-node fault makes it four
// for a while; maxNodes bounds the nodes one run can have had.
const (
	clusterSize = 3
	maxNodes    = 8
)

// localCluster is a run's nodes in this process (see cluster/local: each
// slot keeps its addresses and data directory for the run, so a node can be
// killed and restarted, or wiped and restarted), with the run's faults
// wired in: every node dials Raft through the run's Network, which cuts
// links, and reads the time from its own clock, which the clock faults
// move.
type localCluster struct {
	*local.Cluster
	net *Network
	// clock is each slot's clock offset from the machine's (nanoseconds),
	// which its cluster.Config.Clock adds.
	clock [maxNodes]atomic.Int64
}

// startCluster reserves every port, then starts the three founding nodes
// of design d at once (on mutual TLS if secure) and waits until a leader
// is known and every member has registered its gRPC address. offsets are
// the nodes' clock offsets.
func startCluster(ctx context.Context, dir string, d contract.Design, secure bool, offsets []time.Duration, log *slog.Logger) (*localCluster, error) {
	c := &localCluster{net: NewNetwork(nil)}
	lc, err := local.New(local.Options{Dir: dir, Founders: clusterSize, MaxNodes: maxNodes, Design: d, DNS: true, TLS: secure, Logger: log, Configure: c.configure})
	if err != nil {
		return nil, err
	}
	c.Cluster = lc
	for i := range clusterSize {
		c.net.Add(i, lc.Addrs(i).Raft)
		c.clock[i].Store(int64(offsets[i]))
	}
	if err := c.StartAll(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.WaitReady(ctx, 30*time.Second); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// reserve makes a new slot on the run's network; it is not yet a member.
func (c *localCluster) reserve() (int, error) {
	i, err := c.Reserve()
	if err == nil {
		c.net.Add(i, c.Addrs(i).Raft)
	}
	return i, err
}

// configure is slot i's part of the run: its links and clock, short Raft
// timeouts (as the tests use), and snapshots taken often and logs trimmed
// short, so that restarts go through snapshot restore and a node that was
// down catches up by snapshot installation: more of the node's code under
// fault.
func (c *localCluster) configure(i int, cfg *cluster.Config) {
	cfg.RaftDial = c.net.Dialer(i)
	cfg.Clock = func() time.Time { return time.Now().Add(time.Duration(c.clock[i].Load())) }
	cfg.HeartbeatTimeout = 300 * time.Millisecond
	cfg.ElectionTimeout = 300 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	cfg.SnapshotThreshold = 256
	cfg.SnapshotInterval = time.Second
	cfg.TrailingLogs = 128
	cfg.ApplyTimeout = 5 * time.Second
	// The health flips are made to meet the velocity limit, in ever new
	// combinations (health-burst): the checker judges what the limit does,
	// not the freeze on doubt that a real planner doing that would earn.
	cfg.MaxVelocityRefusals = proto.Uint32(0)
}
