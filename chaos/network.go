package chaos

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrPartitioned is what a Raft dial between two cut nodes fails with.
var ErrPartitioned = errors.New("chaos: link cut by a partition")

// Network is the partition tool: every node's Raft connections are opened
// through Dialer, which refuses a dial across a cut link and remembers
// each connection by (from, to) so that cutting a link also closes the
// connections already open across it, in both directions. A connection
// accepted by a node was dialled by the other side, so tracking the
// dialling side covers every Raft connection.
//
// Only Raft traffic is cut. Clients still reach every node over gRPC, and
// a cut-off node still forwards what it is sent to the leader it knows:
// the harder case for safety, since a deposed leader keeps answering.
type Network struct {
	// mu guards everything below: fault injection writes it, every Raft
	// dial and close reads and writes it.
	mu    sync.Mutex
	nodes map[string]int // Raft address → node index
	cut   map[link]bool  // unordered: link{a, b} with a < b
	conns map[link]map[*trackedConn]struct{}
}

// link is a pair of node indexes.
type link struct{ a, b int }

func pair(a, b int) link {
	if a > b {
		a, b = b, a
	}
	return link{a, b}
}

// NewNetwork returns a network with no link cut; raftAddrs are the nodes'
// Raft addresses, by node index.
func NewNetwork(raftAddrs []string) *Network {
	n := &Network{nodes: map[string]int{}, cut: map[link]bool{}, conns: map[link]map[*trackedConn]struct{}{}}
	for i, a := range raftAddrs {
		n.nodes[a] = i
	}
	return n
}

// Dialer is node from's cluster.Config.RaftDial.
func (n *Network) Dialer(from int) func(addr string, timeout time.Duration) (net.Conn, error) {
	return func(addr string, timeout time.Duration) (net.Conn, error) {
		n.mu.Lock()
		to, known := n.nodes[addr]
		refused := known && n.cut[pair(from, to)]
		n.mu.Unlock()
		if refused {
			return nil, fmt.Errorf("%w: node %d to node %d", ErrPartitioned, from, to)
		}
		c, err := (&net.Dialer{Timeout: timeout}).Dial("tcp", addr)
		if err != nil || !known {
			return c, err
		}
		n.mu.Lock()
		defer n.mu.Unlock()
		// The link may have been cut while the dial was under way.
		l := pair(from, to)
		if n.cut[l] {
			c.Close()
			return nil, fmt.Errorf("%w: node %d to node %d", ErrPartitioned, from, to)
		}
		tc := &trackedConn{Conn: c, net: n, link: l}
		if n.conns[l] == nil {
			n.conns[l] = map[*trackedConn]struct{}{}
		}
		n.conns[l][tc] = struct{}{}
		return tc, nil
	}
}

// Isolate cuts node i from every other node.
func (n *Network) Isolate(i int) {
	n.mu.Lock()
	var closing []*trackedConn
	for _, j := range n.nodes {
		if j == i {
			continue
		}
		l := pair(i, j)
		n.cut[l] = true
		for c := range n.conns[l] {
			closing = append(closing, c)
		}
	}
	n.mu.Unlock()
	// Closed outside the lock: Close takes it to forget the connection.
	for _, c := range closing {
		c.Close()
	}
}

// Add makes the node at raftAddr node i, for a node added to the cluster.
func (n *Network) Add(i int, raftAddr string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nodes[raftAddr] = i
}

// Heal restores every link.
func (n *Network) Heal() {
	n.mu.Lock()
	defer n.mu.Unlock()
	clear(n.cut)
}

// Cut reports whether the link between nodes a and b is cut.
func (n *Network) Cut(a, b int) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cut[pair(a, b)]
}

// open counts the tracked connections across the link between a and b.
func (n *Network) open(a, b int) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return len(n.conns[pair(a, b)])
}

// trackedConn is a Raft connection the network can close when its link is
// cut.
type trackedConn struct {
	net.Conn
	net  *Network
	link link
	once sync.Once
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.net.mu.Lock()
		delete(c.net.conns[c.link], c)
		c.net.mu.Unlock()
	})
	return c.Conn.Close()
}
