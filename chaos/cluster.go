package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsplan/dnsplan/cluster"
)

// clusterSize is the number of founding nodes: three, the smallest
// cluster that survives the loss of one. An add-node fault makes it four
// for a while; maxNodes bounds the nodes one run can have had.
const (
	clusterSize = 3
	maxNodes    = 8
)

// localCluster is the nodes of a run in this process on loopback TCP, each
// on the same ports and data directory for its whole life, so that a node
// can be closed (killed) and started again as a restarted process would
// be, or wiped and started again (a replaced machine on the same address).
// A node slot, once added, is never reused.
type localCluster struct {
	dir    string
	legacy bool
	log    *slog.Logger
	net    *Network

	// size is how many slots exist; a slot's addresses are written before
	// size grows past it and never change, so readers that load size
	// first may read them without mu.
	size                 atomic.Int32
	ids, raft, grpc, dns [maxNodes]string
	// clock is each node's clock offset from the machine's (nanoseconds),
	// which its cluster.Config.Clock adds: the clock-skew faults move it.
	clock [maxNodes]atomic.Int64
	peers []cluster.Peer // the founding members

	// mu guards nodes (nil while a node is down), first, member and join:
	// faults stop, start, add and remove nodes while observers read them.
	mu    sync.Mutex
	nodes [maxNodes]*cluster.Node
	// first holds the listeners reserved for each node's first start, so
	// no other process can take a port between reserving and starting;
	// restarts listen on the same addresses again.
	first [maxNodes]*listeners
	// member says a slot is in the cluster's configuration (or being
	// added to it): startAll starts members, ready expects them.
	member [maxNodes]bool
	// join, when set, is the gRPC address a node with no data asks to be
	// added through (cluster.Config.Join) instead of the founding list.
	join [maxNodes]string
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
// registered its gRPC address. offsets are the nodes' clock offsets.
func startCluster(ctx context.Context, dir string, legacy bool, offsets []time.Duration, log *slog.Logger) (*localCluster, error) {
	c := &localCluster{dir: dir, legacy: legacy, log: log}
	c.net = NewNetwork(nil)
	for i := range clusterSize {
		if _, err := c.reserve(); err != nil {
			c.releaseFirst()
			return nil, err
		}
		c.peers = append(c.peers, cluster.Peer{ID: c.ids[i], RaftAddr: c.raft[i]})
		c.clock[i].Store(int64(offsets[i]))
		c.mu.Lock()
		c.member[i] = true
		c.mu.Unlock()
	}
	if err := c.startAll(); err != nil {
		c.releaseFirst() // those a failed start did not take
		c.stopAll()
		return nil, err
	}
	if err := c.waitReady(ctx, 30*time.Second); err != nil {
		c.stopAll()
		return nil, err
	}
	return c, nil
}

// reserve opens a new slot's sockets and names it n<slot+1>; it is not yet
// a member.
func (c *localCluster) reserve() (int, error) {
	i := int(c.size.Load())
	if i >= maxNodes {
		return -1, fmt.Errorf("no node slot left (%d)", maxNodes)
	}
	rl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return -1, err
	}
	gl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		rl.Close()
		return -1, err
	}
	udp, tcp, err := listenDNS("127.0.0.1:0")
	if err != nil {
		rl.Close()
		gl.Close()
		return -1, err
	}
	c.ids[i] = fmt.Sprintf("n%d", i+1)
	c.raft[i] = rl.Addr().String()
	c.grpc[i] = gl.Addr().String()
	c.dns[i] = udp.LocalAddr().String()
	c.mu.Lock()
	c.first[i] = &listeners{raft: rl, grpc: gl, dnsTCP: tcp, dnsUDP: udp}
	c.mu.Unlock()
	c.net.Add(i, c.raft[i])
	c.size.Store(int32(i + 1))
	return i, nil
}

func (c *localCluster) releaseFirst() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, l := range c.first {
		if l != nil {
			l.close()
			c.first[i] = nil
		}
	}
}

// slots is how many node slots exist.
func (c *localCluster) slots() int { return int(c.size.Load()) }

// isMember reports whether slot i is in the cluster (or being added).
func (c *localCluster) isMember(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member[i]
}

// members counts the member slots.
func (c *localCluster) members() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, m := range c.member {
		if m {
			n++
		}
	}
	return n
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
	c.mu.Lock()
	join := c.join[i]
	c.mu.Unlock()
	peers := c.peers
	if join != "" {
		peers = nil
	}
	return cluster.Config{
		ID:                 c.ids[i],
		DataDir:            filepath.Join(c.dir, c.ids[i]),
		RaftAddr:           c.raft[i],
		GRPCAddr:           c.grpc[i],
		DNSAddr:            c.dns[i],
		RaftDial:           c.net.Dialer(i),
		InitialCluster:     peers,
		Join:               join,
		Clock:              func() time.Time { return time.Now().Add(time.Duration(c.clock[i].Load())) },
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

// wipe deletes node i's data, as a replaced machine has none; the node
// must be down.
func (c *localCluster) wipe(i int) error {
	return os.RemoveAll(filepath.Join(c.dir, c.ids[i]))
}

// setJoin makes node i's next start with no data join through addr (empty:
// bootstrap from the founding list, as compose does).
func (c *localCluster) setJoin(i int, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.join[i] = addr
}

// setMember marks slot i as a member of the cluster or not.
func (c *localCluster) setMember(i int, m bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.member[i] = m
}

// startAll starts every member that is down, in parallel (founding nodes
// started together elect a leader fastest).
func (c *localCluster) startAll() error {
	n := c.slots()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		if c.isMember(i) && c.node(i) == nil {
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
	for i := range c.slots() {
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
	for i := range c.slots() {
		if n := c.node(i); n != nil && n.IsLeader() {
			return i
		}
	}
	return -1
}

// waitReady waits until every running node knows a leader and every member
// has registered its gRPC address. A node that does not answer its own
// Status (a hung node) keeps it waiting until the timeout.
func (c *localCluster) waitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ready := make(chan bool, 1)
		// ready reads nodes' state, which a hung node never gives: do not
		// wait on it past the deadline.
		go func() { ready <- c.ready() }()
		select {
		case ok := <-ready:
			if ok {
				return nil
			}
		case <-time.After(time.Until(deadline)):
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
	members := c.members()
	for i := range c.slots() {
		n := c.node(i)
		if n == nil {
			continue
		}
		running++
		st, err := n.Status()
		if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != members {
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
