// Package local runs a dnsplan cluster inside one process: real nodes,
// real Raft over loopback TCP, the real gRPC API and DNS. It is the one
// in-process launcher: `dnsplan dev`, the AWS scenario, chaos runs and the
// tests (through cluster/clustertest) all start their clusters with it.
//
// Each node lives in a slot with fixed addresses and a data directory for
// the cluster's whole life, so a node can be stopped (killed) and started
// again as a restarted process would be, or wiped and started again (a
// replaced machine on the same address). A slot, once reserved, is never
// reused.
//
// With Options.TLS the cluster runs mutual TLS, as deployed clusters do,
// with a CA of its own: each slot's node certificate is issued as the slot
// is reserved, and Certificate issues any client identity the caller
// acts as (a planner, an enactor, an operator, a reader).
package local

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/loopback"
	"github.com/dnsplan/dnsplan/internal/poll"
)

// DefaultMaxNodes bounds the slots of a cluster whose Options leave
// MaxNodes zero: room for a few nodes added on top of the founders.
const DefaultMaxNodes = 8

// Addrs are one node's identity and addresses. An empty DNS or HTTP
// address runs the node without that server.
type Addrs struct {
	ID, Raft, GRPC, DNS, HTTP string
}

// Options shape a cluster. Zero values take the defaults.
type Options struct {
	// Dir holds each node's data directory, named by its id. Required.
	Dir string
	// Founders is the number of founding nodes (default 3).
	Founders int
	// MaxNodes bounds the slots, founders and added nodes together
	// (default DefaultMaxNodes, at least Founders).
	MaxNodes int
	// Design is the design the cluster is founded with (default Fixed).
	Design contract.Design
	// Addrs, if set, names slot i's id and addresses (as dev does, on the
	// contract's local ports). Otherwise slot i is n<i+1> on free loopback
	// ports, each held open from the moment it is reserved until the
	// node's first start, so nothing else can take it in between.
	Addrs func(i int) Addrs
	// DNS serves DNS on every node on a free loopback port (UDP and TCP),
	// when Addrs is not set.
	DNS bool
	// Logger is the nodes' log (each node's lines carry node=<id>);
	// default none.
	Logger *slog.Logger
	// TLS runs every node on mutual TLS with a CA of the cluster's own
	// (cluster.Config.TLS, set before Configure runs): clients then need
	// a certificate (Certificate, ClientTLS) to reach the API at all.
	TLS bool
	// CertDir holds a TLS cluster's CA and every certificate it issued
	// (default Dir/certs). A CA already there is kept, so a kept
	// directory keeps trusting what it issued before; certificates are
	// issued anew.
	CertDir string
	// Configure adjusts slot i's configuration before each start: Raft
	// timeouts (see Fast), a dialer, a clock.
	Configure func(i int, cfg *cluster.Config)
	// Store is the log the nodes run on (default cluster.StoreRaft). On
	// cluster.StoreEtcd every node uses Etcd (its endpoints are required)
	// and there are no founders to name: a node joins by starting.
	Store cluster.Store
	Etcd  cluster.EtcdConfig
}

// Fast sets the short Raft timeouts tests and harnesses use, so that a
// cluster is ready, and elects a new leader, in well under a second.
func Fast(cfg *cluster.Config) {
	cfg.HeartbeatTimeout = 250 * time.Millisecond
	cfg.ElectionTimeout = 250 * time.Millisecond
	cfg.LeaderLeaseTimeout = 150 * time.Millisecond
	cfg.ApplyTimeout = 5 * time.Second
}

// Cluster is a cluster in this process.
type Cluster struct {
	opts Options
	log  *slog.Logger

	// size is how many slots exist; a slot's addresses are written before
	// size grows past it and never change, so readers that load size
	// first may read them without mu.
	size  atomic.Int32
	addrs []Addrs
	peers []cluster.Peer // the founding members

	// mu guards nodes (nil while a node is down), held, member and join:
	// callers stop, start, add and remove nodes while others read them.
	mu    sync.Mutex
	nodes []*cluster.Node
	// held are the sockets reserved for each slot's first start.
	held []*sockets
	// member says a slot is in the cluster's configuration (or being
	// added to it): StartAll starts members, WaitReady expects them.
	member []bool
	// join, when set, is the gRPC address a node with no data asks to be
	// added through (cluster.Config.Join) instead of the founding list.
	join []string

	// certMu guards certs, the certificates issued so far by name (a
	// certificate's files are named by its holder's name, so a name has
	// one). It is not mu: issuing writes files, and callers issue client
	// certificates while faults reserve slots.
	certMu sync.Mutex
	certs  map[string]*auth.Loader
}

// sockets are one node's listeners for its first start.
type sockets struct {
	raft, grpc, dnsTCP net.Listener
	dnsUDP             net.PacketConn
}

func (s *sockets) close() {
	for _, c := range []io.Closer{s.raft, s.grpc, s.dnsTCP, s.dnsUDP} {
		if c != nil {
			c.Close()
		}
	}
}

// New reserves the founding slots (their ports held open) without
// starting any node; StartAll starts them. Close releases what New holds.
func New(opts Options) (*Cluster, error) {
	if opts.Dir == "" {
		return nil, errors.New("local: a data directory is required")
	}
	if opts.Founders == 0 {
		opts.Founders = 3
	}
	if opts.MaxNodes == 0 {
		opts.MaxNodes = DefaultMaxNodes
	}
	opts.MaxNodes = max(opts.MaxNodes, opts.Founders)
	if opts.Design == "" {
		opts.Design = contract.Fixed
	}
	if opts.Store == "" {
		opts.Store = cluster.StoreRaft
	}
	if opts.Store == cluster.StoreEtcd && len(opts.Etcd.Endpoints) == 0 {
		return nil, errors.New("local: a cluster on the etcd store needs etcd endpoints")
	}
	if _, err := contract.ParseDesign(string(opts.Design)); err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opts.TLS {
		if opts.CertDir == "" {
			opts.CertDir = filepath.Join(opts.Dir, "certs")
		}
		if err := auth.InitCA(opts.CertDir, 0, time.Now()); err != nil && !errors.Is(err, auth.ErrExists) {
			return nil, fmt.Errorf("local: %w", err)
		}
	}
	n := opts.MaxNodes
	c := &Cluster{opts: opts, log: log, addrs: make([]Addrs, n), nodes: make([]*cluster.Node, n),
		held: make([]*sockets, n), member: make([]bool, n), join: make([]string, n), certs: map[string]*auth.Loader{}}
	for i := range opts.Founders {
		if _, err := c.Reserve(); err != nil {
			c.Close()
			return nil, err
		}
		c.peers = append(c.peers, cluster.Peer{ID: c.addrs[i].ID, RaftAddr: c.addrs[i].Raft})
		c.SetMember(i, true)
	}
	return c, nil
}

// Start reserves and starts the founding nodes and waits, up to timeout,
// until the cluster is ready (see WaitReady).
func Start(ctx context.Context, opts Options, timeout time.Duration) (*Cluster, error) {
	c, err := New(opts)
	if err != nil {
		return nil, err
	}
	if err := c.StartAll(); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.WaitReady(ctx, timeout); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Reserve makes a new slot, its ports held open; it is not yet a member.
func (c *Cluster) Reserve() (int, error) {
	i := c.Slots()
	if i >= c.opts.MaxNodes {
		return -1, fmt.Errorf("local: no node slot left (%d)", c.opts.MaxNodes)
	}
	var (
		a   Addrs
		s   *sockets
		err error
	)
	if c.opts.Addrs != nil {
		a = c.opts.Addrs(i)
	} else {
		a, s, err = c.listen(i)
		if err != nil {
			return -1, fmt.Errorf("local: reserving ports for node %d: %w", i+1, err)
		}
	}
	if c.opts.TLS {
		// The node's hosts as well as loopback's names: a client that
		// checks the server's name finds it on the address it dialled.
		var hosts []string
		for _, addr := range []string{a.GRPC, a.Raft} {
			if h, _, err := net.SplitHostPort(addr); err == nil {
				hosts = append(hosts, h)
			}
		}
		if _, err := c.issue(auth.Identity{Role: auth.RoleNode, Name: a.ID}, hosts...); err != nil {
			if s != nil {
				s.close()
			}
			return -1, fmt.Errorf("local: node %s's certificate: %w", a.ID, err)
		}
	}
	c.addrs[i] = a
	c.mu.Lock()
	c.held[i] = s
	c.mu.Unlock()
	c.size.Store(int32(i + 1))
	return i, nil
}

// listen opens slot i's sockets on free loopback ports.
func (c *Cluster) listen(i int) (Addrs, *sockets, error) {
	s := &sockets{}
	var err error
	if s.raft, err = loopback.Listen(); err != nil {
		return Addrs{}, nil, err
	}
	if s.grpc, err = loopback.Listen(); err != nil {
		s.close()
		return Addrs{}, nil, err
	}
	a := Addrs{ID: fmt.Sprintf("n%d", i+1), Raft: s.raft.Addr().String(), GRPC: s.grpc.Addr().String()}
	if c.opts.DNS {
		if s.dnsUDP, s.dnsTCP, err = loopback.ListenDNS(); err != nil {
			s.close()
			return Addrs{}, nil, err
		}
		a.DNS = s.dnsUDP.LocalAddr().String()
	}
	return a, s, nil
}

// Slots is how many slots exist.
func (c *Cluster) Slots() int { return int(c.size.Load()) }

// Addrs returns slot i's id and addresses.
func (c *Cluster) Addrs(i int) Addrs { return c.addrs[i] }

// ID returns slot i's node id.
func (c *Cluster) ID(i int) string { return c.addrs[i].ID }

// GRPCAddrs returns the gRPC address of every slot.
func (c *Cluster) GRPCAddrs() []string {
	var out []string
	for i := range c.Slots() {
		out = append(out, c.addrs[i].GRPC)
	}
	return out
}

// CertDir is where a TLS cluster's CA and certificates are ("" without
// TLS).
func (c *Cluster) CertDir() string { return c.opts.CertDir }

// ErrNoTLS: a certificate was asked of a cluster that runs without TLS.
var ErrNoTLS = errors.New("local: the cluster runs without TLS")

// Certificate is the certificate of id, issued by the cluster's CA the
// first time it is asked for and the same one after. A name has one
// certificate: asking for a name already issued to another role is an
// error. Each slot's node certificate (named by its id) is issued as the
// slot is reserved.
func (c *Cluster) Certificate(id auth.Identity) (*auth.Loader, error) {
	if !c.opts.TLS {
		return nil, ErrNoTLS
	}
	return c.issue(id)
}

// ClientTLS is the TLS configuration of a client acting as id, its
// certificate issued as Certificate does; nil on a cluster without TLS,
// which client.WithTLS takes as plaintext. So a caller dials either kind
// of cluster the same way.
func (c *Cluster) ClientTLS(id auth.Identity) (*tls.Config, error) {
	if !c.opts.TLS {
		return nil, nil
	}
	l, err := c.issue(id)
	if err != nil {
		return nil, err
	}
	return l.ClientConfig(""), nil
}

// issue returns id's certificate, issuing it (a node's for loopback and
// hosts) if it was not yet.
func (c *Cluster) issue(id auth.Identity, hosts ...string) (*auth.Loader, error) {
	c.certMu.Lock()
	defer c.certMu.Unlock()
	if l, ok := c.certs[id.Name]; ok {
		if have := l.Identity(); have != id {
			return nil, fmt.Errorf("local: %s is issued as %s already", id, have)
		}
		return l, nil
	}
	r := auth.IssueRequest{Identity: id, Replace: true}
	if id.Role == auth.RoleNode {
		r.Hosts = []string{"127.0.0.1", "localhost"}
		for _, h := range hosts {
			if !slices.Contains(r.Hosts, h) {
				r.Hosts = append(r.Hosts, h)
			}
		}
	}
	if err := auth.Issue(c.opts.CertDir, r, time.Now()); err != nil {
		return nil, fmt.Errorf("local: issuing %s: %w", id, err)
	}
	l, err := auth.NewLoader(auth.FilesIn(c.opts.CertDir, id.Name))
	if err != nil {
		return nil, fmt.Errorf("local: %w", err)
	}
	c.certs[id.Name] = l
	return l, nil
}

// Design is the design the cluster was founded with.
func (c *Cluster) Design() contract.Design { return c.opts.Design }

// IsMember reports whether slot i is in the cluster (or being added).
func (c *Cluster) IsMember(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.member[i]
}

// Members counts the member slots.
func (c *Cluster) Members() int {
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

// SetMember marks slot i as a member of the cluster or not.
func (c *Cluster) SetMember(i int, m bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.member[i] = m
}

// SetJoin makes slot i's next start with no data join through addr (empty:
// bootstrap from the founding list, as compose does).
func (c *Cluster) SetJoin(i int, addr string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.join[i] = addr
}

// Node returns slot i's node, or nil while it is down.
func (c *Cluster) Node(i int) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Leader returns the slot of a running node that believes it leads, or -1.
// On the etcd store, where no node leads and every ready node proposes, it
// is the first ready node.
func (c *Cluster) Leader() int {
	for i := range c.Slots() {
		n := c.Node(i)
		if n == nil {
			continue
		}
		if c.opts.Store == cluster.StoreEtcd {
			if st, err := n.Status(); err == nil && st.GetState() == cluster.EtcdReady {
				return i
			}
		} else if n.IsLeader() {
			return i
		}
	}
	return -1
}

// Store is the log the cluster runs on.
func (c *Cluster) Store() cluster.Store { return c.opts.Store }

// Config is slot i's configuration for its next start.
func (c *Cluster) Config(i int) cluster.Config {
	c.mu.Lock()
	join := c.join[i]
	c.mu.Unlock()
	a := c.addrs[i]
	peers := c.peers
	switch {
	case c.opts.Store == cluster.StoreEtcd:
		// Nodes on etcd join by starting on the same etcd.
		peers, join = nil, ""
	case join != "":
		peers = nil
	}
	cfg := cluster.Config{
		ID:             a.ID,
		DataDir:        filepath.Join(c.opts.Dir, a.ID),
		RaftAddr:       a.Raft,
		GRPCAddr:       a.GRPC,
		DNSAddr:        a.DNS,
		HTTPAddr:       a.HTTP,
		InitialCluster: peers,
		Join:           join,
		Legacy:         c.opts.Design == contract.Legacy,
		Store:          c.opts.Store,
		Etcd:           c.opts.Etcd,
		Logger:         c.log.With("node", a.ID),
		RaftLogOutput:  io.Discard,
	}
	if c.opts.TLS {
		c.certMu.Lock()
		cfg.TLS = c.certs[a.ID] // issued when the slot was reserved
		c.certMu.Unlock()
	}
	if c.opts.Configure != nil {
		c.opts.Configure(i, &cfg)
	}
	return cfg
}

// StartNode starts slot i's node on its addresses and data directory: the
// first time on the sockets reserved for it; later, as a restarted process
// would, listening again, which it retries for a few seconds since a port
// just released may take a moment to be free again.
func (c *Cluster) StartNode(i int) error {
	c.mu.Lock()
	held := c.held[i]
	c.held[i] = nil
	c.mu.Unlock()
	var n *cluster.Node
	var err error
	if held != nil {
		cfg := c.Config(i)
		cfg.RaftListener, cfg.GRPCListener = held.raft, held.grpc
		if cfg.Store == cluster.StoreEtcd {
			// No Raft port on etcd.
			held.raft.Close()
			cfg.RaftListener = nil
		}
		cfg.DNSPacketConn, cfg.DNSListener = held.dnsUDP, held.dnsTCP
		if n, err = cluster.Start(cfg); err != nil {
			held.close() // a failed start may not have taken them
		}
	} else {
		for range 50 {
			if n, err = cluster.Start(c.Config(i)); err == nil {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if err != nil {
		return fmt.Errorf("starting %s: %w", c.addrs[i].ID, err)
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return nil
}

// StopNode closes slot i's node, as if its process were killed: every
// write it acknowledged was fsync'd first, so a clean close loses no more.
func (c *Cluster) StopNode(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		if err := n.Close(); err != nil {
			c.log.Warn("closing node", "node", c.addrs[i].ID, "err", err)
		}
	}
}

// Wipe deletes slot i's data, as a replaced machine has none; the node
// must be down.
func (c *Cluster) Wipe(i int) error {
	return os.RemoveAll(filepath.Join(c.opts.Dir, c.addrs[i].ID))
}

// StartAll starts every member that is down, in parallel (founding nodes
// started together elect a leader fastest).
func (c *Cluster) StartAll() error {
	n := c.Slots()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		if c.IsMember(i) && c.Node(i) == nil {
			wg.Go(func() { errs[i] = c.StartNode(i) })
		}
	}
	wg.Wait()
	return errors.Join(errs...)
}

// StopAll stops every node, in parallel: a follower outliving the leader
// would only wait out its timeouts.
func (c *Cluster) StopAll() {
	var wg sync.WaitGroup
	for i := range c.Slots() {
		wg.Go(func() { c.StopNode(i) })
	}
	wg.Wait()
}

// Close stops every node and releases the sockets of slots never started.
func (c *Cluster) Close() {
	c.StopAll()
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, s := range c.held {
		if s != nil {
			s.close()
			c.held[i] = nil
		}
	}
}

// WaitReady waits, up to timeout, until every running node knows a leader
// and every member has registered its gRPC address (enactors read back
// from every node, so they need them). A node that does not answer its
// own Status (a hung node) keeps it waiting until the timeout.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration) error {
	return poll.Until(ctx, timeout, "a leader, every member registered, and the log version active", func() bool {
		ready := make(chan bool, 1)
		// ready reads the nodes' state, which a hung node never gives: do
		// not wait on it past a poll.
		go func() { ready <- c.ready() }()
		select {
		case ok := <-ready:
			return ok
		case <-time.After(time.Second):
			return false
		}
	})
}

func (c *Cluster) ready() bool {
	if c.opts.Store == cluster.StoreEtcd {
		return c.readyOnEtcd()
	}
	running := 0
	members := c.Members()
	for i := range c.Slots() {
		n := c.Node(i)
		if n == nil {
			continue
		}
		running++
		st, err := n.Status()
		if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != members || st.GetLogVersion() != st.GetNodeLogVersion() {
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

// readyOnEtcd: every running node caught up with the log and in touch with
// etcd, every running node registered, the policy founded and the log
// version active. The registry holds live nodes only, so a stopped member
// is not waited for.
func (c *Cluster) readyOnEtcd() bool {
	var nodes []*cluster.Node
	for i := range c.Slots() {
		if n := c.Node(i); n != nil {
			nodes = append(nodes, n)
		}
	}
	for _, n := range nodes {
		st, err := n.Status()
		if err != nil || st.GetState() != cluster.EtcdReady || len(st.GetMembers()) != len(nodes) ||
			st.GetConfig() == nil || st.GetLogVersion() != st.GetNodeLogVersion() {
			return false
		}
	}
	return len(nodes) > 0
}
