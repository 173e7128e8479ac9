// Package clustertest starts real dnsplan clusters inside a test process,
// for the tests of the packages built on the cluster (client, planner,
// enactor, probe, whole-system tests): real Raft over loopback TCP (or,
// with Options.Store, a real three-member etcd on loopback under the etcd
// store), the real gRPC API, DNS on every node if asked, data in the
// test's temp dir, short timeouts. Nothing in it is a fake.
package clustertest

import (
	"bytes"
	"context"
	"crypto/tls"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/local"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/etcdtest"
	"github.com/dnsplan/dnsplan/internal/poll"
)

// LongWait bounds a broken run, not a slow machine's speed: conditions are
// polled until they hold, and this is only the ceiling.
const LongWait = 45 * time.Second

// Options shape a test cluster. Zero values take the defaults.
type Options struct {
	Nodes  int             // default 3
	Design contract.Design // default fixed
	DNS    bool            // serve DNS on every node, on a free UDP+TCP port
	// TLS runs every link with mutual TLS (local.Options.TLS: a fresh
	// CA, a node certificate per node), and Client presents an
	// operator's.
	TLS bool
	// Tune adjusts each node's configuration before it starts.
	Tune func(*cluster.Config)
	// Store is the log the nodes run on (default cluster.StoreRaft). With
	// cluster.StoreEtcd, Start first starts a three-member etcd cluster
	// (internal/etcdtest; `make tools` builds its binary), Cluster.Etcd.
	Store cluster.Store
}

// Cluster is a running test cluster on the in-process launcher
// (cluster/local) with short Raft timeouts. Node i (0-based) keeps its
// addresses across Stop and Restart.
type Cluster struct {
	t   testing.TB
	lc  *local.Cluster
	Log *slog.Logger
	// IDs, GRPCAddrs, DNSAddrs and RaftAddrs are indexed by node.
	IDs, GRPCAddrs, DNSAddrs, RaftAddrs []string
	// CertDir holds the CA and certificates of a TLS cluster ("" without).
	CertDir   string
	clientTLS *tls.Config
	// Etcd is the etcd cluster under a cluster on the etcd store (nil on
	// Raft): tests kill, stop and restart its members.
	Etcd *etcdtest.Cluster
}

// Certificate is the certificate of the cluster's CA for role and name
// (TLS clusters only), issued the first time it is asked for
// (local.Cluster.Certificate); a node's is its node's.
func (c *Cluster) Certificate(role auth.Role, name string) *auth.Loader {
	c.t.Helper()
	l, err := c.lc.Certificate(auth.Identity{Role: role, Name: name})
	if err != nil {
		c.t.Fatal(err)
	}
	return l
}

// Start starts every node at once (as founding members started as
// processes would) and waits until a leader is known and every member has
// registered its gRPC address. The cluster closes at the test's end.
func Start(t testing.TB, opts Options) *Cluster {
	t.Helper()
	if opts.Nodes == 0 {
		opts.Nodes = 3
	}
	c := &Cluster{t: t, Log: Logger(t)}
	var etcd cluster.EtcdConfig
	if opts.Store == cluster.StoreEtcd {
		c.Etcd = etcdtest.Start(t)
		etcd = EtcdConfig(c.Etcd)
	}
	lc, err := local.New(local.Options{
		Store:    opts.Store,
		Etcd:     etcd,
		Dir:      t.TempDir(),
		Founders: opts.Nodes,
		MaxNodes: opts.Nodes,
		Design:   opts.Design,
		DNS:      opts.DNS,
		Logger:   c.Log,
		TLS:      opts.TLS,
		Configure: func(_ int, cfg *cluster.Config) {
			local.Fast(cfg)
			if opts.Tune != nil {
				opts.Tune(cfg)
			}
		},
	})
	if err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	c.lc = lc
	t.Cleanup(lc.Close)
	if opts.TLS {
		c.CertDir = lc.CertDir()
		c.clientTLS = c.Certificate(auth.RoleOperator, "test-operator").ClientConfig("")
	}
	for i := range lc.Slots() {
		a := lc.Addrs(i)
		c.IDs = append(c.IDs, a.ID)
		c.GRPCAddrs = append(c.GRPCAddrs, a.GRPC)
		c.DNSAddrs = append(c.DNSAddrs, a.DNS)
		c.RaftAddrs = append(c.RaftAddrs, a.Raft)
	}
	if err := lc.StartAll(); err != nil {
		t.Fatalf("clustertest: %v", err)
	}
	c.WaitReady()
	return c
}

// EtcdConfig is the configuration of a node on the etcd store of e, with
// the short timeouts of tests: an operation etcd cannot serve answers
// UNAVAILABLE within two seconds, and a stopped node leaves the registry
// as fast as etcd allows.
func EtcdConfig(e *etcdtest.Cluster) cluster.EtcdConfig {
	return cluster.EtcdConfig{
		Endpoints:    e.Endpoints(),
		Timeout:      2 * time.Second,
		MemberTTL:    2 * time.Second,
		ContactEvery: 100 * time.Millisecond,
	}
}

// Store is the log the cluster runs on.
func (c *Cluster) Store() cluster.Store { return c.lc.Store() }

// Node returns node i, or nil while it is stopped.
func (c *Cluster) Node(i int) *cluster.Node { return c.lc.Node(i) }

// Restart starts node i again on its addresses and data dir.
func (c *Cluster) Restart(i int) *cluster.Node {
	c.t.Helper()
	if err := c.lc.StartNode(i); err != nil {
		c.t.Errorf("clustertest: %v", err)
		return nil
	}
	return c.lc.Node(i)
}

// Stop closes node i (a clean stop; a killed process loses no more, since
// every write is fsync'd before it is acknowledged).
func (c *Cluster) Stop(i int) { c.lc.StopNode(i) }

// Wipe deletes node i's data dir, as a replaced machine has none; the
// node must be stopped.
func (c *Cluster) Wipe(i int) {
	c.t.Helper()
	if err := c.lc.Wipe(i); err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
}

// StopAll stops every node.
func (c *Cluster) StopAll() { c.lc.StopAll() }

// Leader returns the index of the node that leads, waiting for one.
func (c *Cluster) Leader() int {
	c.t.Helper()
	WaitFor(c.t, LongWait, "a leader", func() bool { return c.lc.Leader() >= 0 })
	return c.lc.Leader()
}

// WaitReady waits until every running node knows a leader and every member
// has registered its gRPC address.
func (c *Cluster) WaitReady() {
	c.t.Helper()
	if err := c.lc.WaitReady(context.Background(), LongWait); err != nil {
		c.t.Fatalf("clustertest: %v", err)
	}
}

// Client returns a client that knows every node (with an operator's
// certificate on a TLS cluster; later options override); it closes at the
// test's end.
func (c *Cluster) Client(opts ...client.Option) *client.Client {
	c.t.Helper()
	base := []client.Option{client.WithLogger(c.Log)}
	if c.clientTLS != nil {
		base = append(base, client.WithTLS(c.clientTLS))
	}
	cl, err := client.New(c.GRPCAddrs, append(base, opts...)...)
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// WaitFor polls cond until it holds, failing the test after timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	if err := poll.Until(context.Background(), timeout, what, cond); err != nil {
		t.Fatal(err)
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
