package cluster

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/internal/loopback"
	"github.com/dnsplan/dnsplan/internal/poll"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// testCluster runs real nodes in-process over real TCP on loopback, with
// short Raft timeouts and data in a temp dir. Addresses are fixed at
// creation so nodes can be restarted on them.
type testCluster struct {
	t     testing.TB
	dir   string
	mu    sync.Mutex
	nodes map[string]*Node
	specs map[string]*nodeSpec
	order []string
	tune  func(*Config)
	dns   bool // every node, joiners too, runs a DNS server
}

type nodeSpec struct {
	id, raftAddr, grpcAddr string
	dnsAddr                string // empty: no DNS server
	join                   string
	initial                []Peer
}

func newTestCluster(t testing.TB, size int, tune func(*Config)) *testCluster {
	t.Helper()
	c := &testCluster{t: t, dir: t.TempDir(), nodes: map[string]*Node{}, specs: map[string]*nodeSpec{}, tune: tune}
	var peers []Peer
	for i := 1; i <= size; i++ {
		s := &nodeSpec{id: fmt.Sprintf("n%d", i), raftAddr: loopback.FreeAddr(t), grpcAddr: loopback.FreeAddr(t)}
		c.specs[s.id] = s
		c.order = append(c.order, s.id)
		peers = append(peers, Peer{ID: s.id, RaftAddr: s.raftAddr})
	}
	for _, s := range c.specs {
		s.initial = peers
	}
	t.Cleanup(c.closeAll)
	return c
}

// withDNS gives every node a DNS server on a free UDP+TCP port.
func (c *testCluster) withDNS() *testCluster {
	for _, s := range c.specs {
		s.dnsAddr = loopback.FreeDNSAddr(c.t)
	}
	c.dns = true
	return c
}

// startAll starts every node at once, in parallel.
func (c *testCluster) startAll() {
	var wg sync.WaitGroup
	for _, id := range c.order {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(id) }()
	}
	wg.Wait()
}

func (c *testCluster) config(s *nodeSpec) Config {
	cfg := Config{
		ID:                 s.id,
		DataDir:            filepath.Join(c.dir, s.id),
		RaftAddr:           s.raftAddr,
		GRPCAddr:           s.grpcAddr,
		InitialCluster:     s.initial,
		Join:               s.join,
		DNSAddr:            s.dnsAddr,
		HeartbeatTimeout:   250 * time.Millisecond,
		ElectionTimeout:    250 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		ApplyTimeout:       5 * time.Second,
		Logger:             testLogger(),
		RaftLogOutput:      io.Discard,
	}
	if c.tune != nil {
		c.tune(&cfg)
	}
	return cfg
}

func testLogger() *slog.Logger {
	if os.Getenv("DNSPLAN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func (c *testCluster) start(id string) *Node {
	c.t.Helper()
	c.mu.Lock()
	s := c.specs[id]
	c.mu.Unlock()
	var n *Node
	var err error
	// A just-closed port can take a moment to be free again.
	for range 50 {
		if n, err = Start(c.config(s)); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Fatalf("start %s: %v", id, err)
	}
	c.mu.Lock()
	c.nodes[id] = n
	c.mu.Unlock()
	return n
}

// addJoiner adds a node that joins through an existing member.
func (c *testCluster) addJoiner(id, via string) *Node {
	return c.start(c.addJoinerSpec(id, via).id)
}

// addJoinerSpec plans a joiner without starting it, for tests that must
// know its addresses first.
func (c *testCluster) addJoinerSpec(id, via string) *nodeSpec {
	c.mu.Lock()
	s := &nodeSpec{id: id, raftAddr: loopback.FreeAddr(c.t), grpcAddr: loopback.FreeAddr(c.t), join: via}
	if c.dns {
		s.dnsAddr = loopback.FreeDNSAddr(c.t)
	}
	c.specs[id] = s
	c.order = append(c.order, id)
	c.mu.Unlock()
	return s
}

func (c *testCluster) stop(id string) {
	c.mu.Lock()
	n := c.nodes[id]
	delete(c.nodes, id)
	c.mu.Unlock()
	if n != nil {
		if err := n.Close(); err != nil {
			c.t.Logf("close %s: %v", id, err)
		}
	}
}

func (c *testCluster) closeAll() {
	for _, id := range c.order {
		c.stop(id)
	}
}

func (c *testCluster) node(id string) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[id]
}

// activated waits until the cluster's active log version is this
// version's on the leader (every member registered; activation.go).
func (c *testCluster) activated() {
	c.t.Helper()
	l := c.leader()
	waitFor(c.t, 15*time.Second, "the log version active", func() bool {
		var v uint32
		l.machine.read(func(s *fsm.State) { v = s.LogVersion() })
		return v == fsm.LogVersion
	})
}

// leader waits for exactly one running node to lead and be ready.
func (c *testCluster) leader() *Node {
	c.t.Helper()
	var l *Node
	waitFor(c.t, 15*time.Second, "a ready leader", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		l = nil
		for _, n := range c.nodes {
			if n.IsLeader() && n.readyTerm.Load() == n.raft.CurrentTerm() {
				if l != nil {
					return false
				}
				l = n
			}
		}
		return l != nil
	})
	return l
}

// follower returns some running node that is not the leader.
func (c *testCluster) follower() *Node {
	l := c.leader()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, id := range c.order {
		if n := c.nodes[id]; n != nil && n != l {
			return n
		}
	}
	c.t.Fatal("no follower running")
	return nil
}

// api is a set of gRPC clients for one node's address.
type api struct {
	conn    *grpc.ClientConn
	plans   pb.PlanServiceClient
	leases  pb.LeaseServiceClient
	enact   pb.EnactServiceClient
	cluster pb.ClusterServiceClient
}

func dial(t testing.TB, addr string) api {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(64<<20), grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return api{cc, pb.NewPlanServiceClient(cc), pb.NewLeaseServiceClient(cc), pb.NewEnactServiceClient(cc), pb.NewClusterServiceClient(cc)}
}

func (c *testCluster) api(id string) api {
	c.mu.Lock()
	s := c.specs[id]
	c.mu.Unlock()
	return dial(c.t, s.grpcAddr)
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll.Until(context.Background(), timeout, what, cond); err != nil {
		t.Fatal(err)
	}
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// samplePlan is a valid plan with one endpoint of the given weights.
func samplePlan(name string, weights ...uint32) *pb.Plan {
	ep := &pb.EndpointPlan{Name: name, Ttl: 30}
	for i, w := range weights {
		ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("lb-%d", i), Address: fmt.Sprintf("192.0.2.%d", i+1), Weight: w})
	}
	return &pb.Plan{PlannerId: "test", Endpoints: []*pb.EndpointPlan{ep}}
}

func ttl(d time.Duration) *durationpb.Duration { return durationpb.New(d) }

// counterValue is the value of a node's metric (a counter or gauge, summed
// over its labels); 0 for a metric with no sample yet (a vector no label
// has been counted under is not exposed at all).
func counterValue(t *testing.T, n *Node, name string) float64 {
	t.Helper()
	families, err := n.metrics.registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
		var v float64
		for _, m := range f.GetMetric() {
			v += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return v
	}
	return 0
}
