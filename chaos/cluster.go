package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"time"

	"github.com/dnsplan/dnsplan/cluster"
)

// clusterSize is the number of nodes: three, the smallest cluster that
// survives the loss of one.
const clusterSize = 3

// localCluster is three nodes in this process on loopback TCP, each on the
// same ports and data directory for its whole life, so that a node can be
// closed (killed) and started again as a restarted process would be.
type localCluster struct {
	dir    string
	legacy bool
	log    *slog.Logger
	net    *Network

	ids, raft, grpc, dns []string
	peers                []cluster.Peer

	// mu guards nodes (nil while a node is down) and first: faults stop
	// and start nodes while observers read them.
	mu    sync.Mutex
	nodes []*cluster.Node
	// first holds the listeners reserved for each node's first start, so
	// no other process can take a port between reserving and starting;
	// restarts listen on the same addresses again.
	first []*listeners
}

// listeners are one node's sockets for its first start.
type listeners struct {
	raft, grpc, dnsTCP net.Listener
	dnsUDP             net.PacketConn
}

func (l *listeners) close() {
	l.raft.Close()
	l.grpc.Close()
	l.dnsTCP.Close()
	l.dnsUDP.Close()
}

// startCluster reserves every port, then starts the three founding nodes
// at once and waits until a leader is known and every member has
// registered its gRPC address.
func startCluster(ctx context.Context, dir string, legacy bool, log *slog.Logger) (*localCluster, error) {
	c := &localCluster{dir: dir, legacy: legacy, log: log, nodes: make([]*cluster.Node, clusterSize)}
	release := func() {
		for _, l := range c.first {
			if l != nil {
				l.close()
			}
		}
	}
	for i := range clusterSize {
		id := fmt.Sprintf("n%d", i+1)
		rl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			release()
			return nil, err
		}
		gl, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			release()
			return nil, err
		}
		udp, tcp, err := listenDNS("127.0.0.1:0")
		if err != nil {
			release()
			return nil, err
		}
		c.first = append(c.first, &listeners{raft: rl, grpc: gl, dnsTCP: tcp, dnsUDP: udp})
		c.ids = append(c.ids, id)
		c.raft = append(c.raft, rl.Addr().String())
		c.grpc = append(c.grpc, gl.Addr().String())
		c.dns = append(c.dns, udp.LocalAddr().String())
		c.peers = append(c.peers, cluster.Peer{ID: id, RaftAddr: rl.Addr().String()})
	}
	c.net = NewNetwork(c.raft)
	if err := c.startAll(); err != nil {
		release() // those a failed start did not take
		c.stopAll()
		return nil, err
	}
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		c.stopAll()
		return nil, err
	}
	return c, nil
}

// listenDNS opens UDP and TCP on one loopback port, as a DNS server needs.
func listenDNS(addr string) (net.PacketConn, net.Listener, error) {
	var err error
	for range 20 {
		var udp net.PacketConn
		if udp, err = net.ListenPacket("udp", addr); err != nil {
			return nil, nil, err
		}
		var tcp net.Listener
		if tcp, err = net.Listen("tcp", udp.LocalAddr().String()); err == nil {
			return udp, tcp, nil
		}
		udp.Close()
	}
	return nil, nil, fmt.Errorf("no loopback port free for both UDP and TCP: %w", err)
}

// config is node i's configuration: short Raft timeouts (as the tests
// use), and snapshots taken often and logs trimmed short, so that restarts
// go through snapshot restore and a node that was down catches up by
// snapshot installation: more of the node's code under fault.
func (c *localCluster) config(i int) cluster.Config {
	return cluster.Config{
		ID:                 c.ids[i],
		DataDir:            filepath.Join(c.dir, c.ids[i]),
		RaftAddr:           c.raft[i],
		GRPCAddr:           c.grpc[i],
		DNSAddr:            c.dns[i],
		RaftDial:           c.net.Dialer(i),
		InitialCluster:     c.peers,
		HeartbeatTimeout:   300 * time.Millisecond,
		ElectionTimeout:    300 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		SnapshotThreshold:  256,
		SnapshotInterval:   time.Second,
		TrailingLogs:       128,
		ApplyTimeout:       5 * time.Second,
		Legacy:             c.legacy,
		Logger:             c.log.With("node", c.ids[i]),
		RaftLogOutput:      io.Discard,
	}
}

// start starts node i on its addresses and data directory. A port just
// released may take a moment to be free again, so it retries for a while.
func (c *localCluster) start(i int) error {
	c.mu.Lock()
	first := c.first[i]
	c.first[i] = nil
	c.mu.Unlock()
	var n *cluster.Node
	var err error
	if first != nil {
		cfg := c.config(i)
		cfg.RaftListener, cfg.GRPCListener = first.raft, first.grpc
		cfg.DNSPacketConn, cfg.DNSListener = first.dnsUDP, first.dnsTCP
		n, err = cluster.Start(cfg)
	} else {
		for range 50 {
			if n, err = cluster.Start(c.config(i)); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err != nil {
		return fmt.Errorf("starting %s: %w", c.ids[i], err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return nil
}

// stop closes node i, as if its process were killed: every write it
// acknowledged was fsync'd first, so a clean close loses no more.
func (c *localCluster) stop(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		if err := n.Close(); err != nil {
			c.log.Warn("closing node", "node", c.ids[i], "err", err)
		}
	}
}

// startAll starts every node that is down, in parallel (founding nodes
// started together elect a leader fastest).
func (c *localCluster) startAll() error {
	errs := make([]error, clusterSize)
	var wg sync.WaitGroup
	for i := range clusterSize {
		if c.node(i) == nil {
			wg.Go(func() { errs[i] = c.start(i) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// stopAll stops every node, in parallel: a follower outliving the leader
// would only wait out its timeouts.
func (c *localCluster) stopAll() {
	var wg sync.WaitGroup
	for i := range clusterSize {
		wg.Go(func() { c.stop(i) })
	}
	wg.Wait()
}

// node returns node i, or nil while it is down.
func (c *localCluster) node(i int) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// leader returns the index of a running node that believes it leads, or
// -1.
func (c *localCluster) leader() int {
	for i := range clusterSize {
		if n := c.node(i); n != nil && n.IsLeader() {
			return i
		}
	}
	return -1
}

// waitReady waits until every running node knows a leader and every member
// has registered its gRPC address.
func (c *localCluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		if c.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cluster not ready after %s", timeout)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (c *localCluster) ready() bool {
	running := 0
	for i := range clusterSize {
		n := c.node(i)
		if n == nil {
			continue
		}
		running++
		st, err := n.Status()
		if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != clusterSize {
			return false
		}
		for _, m := range st.GetMembers() {
			if m.GetGrpcAddr() == "" {
				return false
			}
		}
	}
	return running > 0
}
