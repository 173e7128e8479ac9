// Package clustertest starts real dnsplan clusters inside a test process,
// for the tests of the packages built on the cluster (client, planner,
// enactor, probe, whole-system tests): real Raft over loopback TCP, the
// real gRPC API, DNS on every node if asked, data in the test's temp dir,
// short Raft timeouts. Nothing in it is a fake.
package clustertest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/internal/testnet"
)

// LongWait bounds a broken run, not a slow machine's speed: conditions are
// polled until they hold, and this is only the ceiling.
const LongWait = 45 * time.Second

// Options shape a test cluster. Zero values take the defaults.
type Options struct {
	Nodes int  // default 3
	DNS   bool // serve DNS on every node, on a free UDP+TCP port
	// Tune adjusts each node's configuration before it starts.
	Tune func(*cluster.Config)
}

// Cluster is a running test cluster. Node i (0-based) keeps its addresses
// across Stop and Restart.
type Cluster struct {
	t    testing.TB
	dir  string
	opts Options
	Log  *slog.Logger
	// IDs, GRPCAddrs, DNSAddrs and RaftAddrs are indexed by node.
	IDs, GRPCAddrs, DNSAddrs, RaftAddrs []string

	// mu guards nodes: tests stop and restart nodes while helpers read.
	mu    sync.Mutex
	nodes []*cluster.Node
	peers []cluster.Peer
}

// Start starts every node at once (as founding members started as
// processes would) and waits until a leader is known and every member has
// registered its gRPC address. The cluster closes at the test's end.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	c := &Cluster{t: t, dir: t.TempDir(), opts: opts, Log: Logger(t), nodes: make([]*cluster.Node, opts.Nodes)}
	for i := range opts.Nodes {
		c.IDs = append(c.IDs, fmt.Sprintf("n%d", i+1))
		c.RaftAddrs = append(c.RaftAddrs, testnet.FreeAddr(t))
		c.GRPCAddrs = append(c.GRPCAddrs, testnet.FreeAddr(t))
		dns := ""
		if opts.DNS {
			dns = testnet.FreeDNSAddr(t)
		}
		c.DNSAddrs = append(c.DNSAddrs, dns)
		c.peers = append(c.peers, cluster.Peer{ID: c.IDs[i], RaftAddr: c.RaftAddrs[i]})
	}
	t.Cleanup(c.StopAll)
	var wg sync.WaitGroup
	for i := range opts.Nodes {
		wg.Go(func() { c.Restart(i) })
	}
	wg.Wait()
	c.WaitReady()
	return c
}

// Node returns node i, or nil while it is stopped.
func (c *Cluster) Node(i int) *cluster.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// Restart starts node i on its addresses and data dir (the first start
// too). A port just released may take a moment to be free again.
func (c *Cluster) Restart(i int) *cluster.Node {
	c.t.Helper()
	cfg := cluster.Config{
		ID:                 c.IDs[i],
		DataDir:            filepath.Join(c.dir, c.IDs[i]),
		RaftAddr:           c.RaftAddrs[i],
		GRPCAddr:           c.GRPCAddrs[i],
		DNSAddr:            c.DNSAddrs[i],
		InitialCluster:     c.peers,
		HeartbeatTimeout:   250 * time.Millisecond,
		ElectionTimeout:    250 * time.Millisecond,
		LeaderLeaseTimeout: 150 * time.Millisecond,
		ApplyTimeout:       5 * time.Second,
		Logger:             c.Log.With("node", c.IDs[i]),
		RaftLogOutput:      io.Discard,
	}
	if c.opts.Tune != nil {
		c.opts.Tune(&cfg)
	}
	var n *cluster.Node
	var err error
	for range 50 {
		if n, err = cluster.Start(cfg); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		c.t.Errorf("clustertest: start %s: %v", c.IDs[i], err)
		return nil
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return n
}

// Stop closes node i (a clean stop; a killed process loses no more, since
// every write is fsync'd before it is acknowledged).
func (c *Cluster) Stop(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		if err := n.Close(); err != nil {
			c.t.Logf("clustertest: close %s: %v", c.IDs[i], err)
		}
	}
}

// StopAll stops every node.
func (c *Cluster) StopAll() {
	for i := range c.IDs {
		c.Stop(i)
	}
}

// Leader returns the index of the node that leads, waiting for one.
func (c *Cluster) Leader() int {
	c.t.Helper()
	leader := -1
	WaitFor(c.t, LongWait, "a leader", func() bool {
		for i := range c.IDs {
			if n := c.Node(i); n != nil && n.IsLeader() {
				leader = i
				return true
			}
		}
		return false
	})
	return leader
}

// WaitReady waits until every running node knows a leader and every member
// has registered its gRPC address.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	WaitFor(c.t, LongWait, "a leader and every member registered", func() bool {
		for i := range c.IDs {
			n := c.Node(i)
			if n == nil {
				continue
			}
			st, err := n.Status()
			if err != nil || st.GetLeaderId() == "" || len(st.GetMembers()) != len(c.IDs) {
				return false
			}
			for _, m := range st.GetMembers() {
				if m.GetGrpcAddr() == "" {
					return false
				}
			}
		}
		return true
	})
}

// Client returns a client that knows every node; it closes at the test's
// end.
func (c *Cluster) Client(opts ...client.Option) *client.Client {
	c.t.Helper()
	cl, err := client.New(c.GRPCAddrs, append([]client.Option{client.WithLogger(c.Log)}, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// WaitFor polls cond every 10ms until it holds, failing the test after
// timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Ctx is a context for one test step, cancelled at the test's end.
func Ctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), LongWait)
	t.Cleanup(cancel)
	return ctx
}

// Logger returns a logger that keeps a test's log lines and prints their
// tail if the test fails; DNSPLAN_TEST_LOG=1 streams them to stderr.
func Logger(t testing.TB) *slog.Logger {
	if os.Getenv("DNSPLAN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sink := &logSink{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("log tail:\n%s", sink.tail(256<<10))
		}
	})
	return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// logSink collects log lines from every goroutine of a test.
type logSink struct {
	// mu guards buf.
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *logSink) tail(n int) []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := s.buf.Bytes()
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return bytes.Clone(b)
}
