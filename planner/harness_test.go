package planner_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsplan/dnsplan/backend"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/planner"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Generous ceilings: they bound a broken run, not a slow machine's speed.
const (
	longWait     = 45 * time.Second
	testInterval = 100 * time.Millisecond
	endpoint     = "api.dnsplan.test."
)

// logSink collects a test's log lines and prints the tail if it fails;
// DNSPLAN_TEST_LOG=1 streams them to stderr instead.
type logSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *logSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func newLogger(t *testing.T) *slog.Logger {
	t.Helper()
	if os.Getenv("DNSPLAN_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	sink := &logSink{}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		sink.mu.Lock()
		defer sink.mu.Unlock()
		b := sink.buf.Bytes()
		if len(b) > 128<<10 {
			b = b[len(b)-128<<10:]
		}
		t.Logf("log tail:\n%s", b)
	})
	return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// startCluster runs a real cluster of size nodes in this process over
// loopback TCP, with short Raft timeouts and the default velocity limit
// (a plan may remove at most half an endpoint's weight), and returns the
// nodes' gRPC addresses once a leader serves.
func startCluster(t *testing.T, size int) []string {
	t.Helper()
	dir := t.TempDir()
	var peers []cluster.Peer
	var addrs []string
	var cfgs []cluster.Config
	for i := 1; i <= size; i++ {
		id := fmt.Sprintf("n%d", i)
		raftLis, grpcLis := listen(t), listen(t)
		peers = append(peers, cluster.Peer{ID: id, RaftAddr: raftLis.Addr().String()})
		addrs = append(addrs, grpcLis.Addr().String())
		cfgs = append(cfgs, cluster.Config{
			ID:                 id,
			DataDir:            filepath.Join(dir, id),
			RaftListener:       raftLis,
			GRPCListener:       grpcLis,
			HeartbeatTimeout:   200 * time.Millisecond,
			ElectionTimeout:    200 * time.Millisecond,
			LeaderLeaseTimeout: 100 * time.Millisecond,
			Logger:             slog.New(slog.DiscardHandler),
			RaftLogOutput:      io.Discard,
		})
	}
	var wg sync.WaitGroup
	errs := make(chan error, size)
	var mu sync.Mutex
	for _, cfg := range cfgs {
		if size > 1 {
			cfg.InitialCluster = peers // one node alone bootstraps itself
		}
		wg.Go(func() {
			n, err := cluster.Start(cfg)
			if err != nil {
				errs <- fmt.Errorf("start %s: %w", cfg.ID, err)
				return
			}
			mu.Lock()
			t.Cleanup(func() { _ = n.Close() })
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	cl := newClient(t, addrs)
	waitFor(t, "a leader with every member", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		st, err := cl.Status(ctx)
		return err == nil && st.GetLeaderId() != "" && len(st.GetMembers()) == size
	})
	return addrs
}

func newClient(t *testing.T, addrs []string) *client.Client {
	t.Helper()
	cl, err := client.New(addrs)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

// startBackend serves a real sample backend on a loopback port and
// returns it with its health-check URL.
func startBackend(t *testing.T, id string) (*backend.Backend, string) {
	t.Helper()
	b := backend.New(id)
	srv := httptest.NewServer(b.Handler())
	t.Cleanup(srv.Close)
	return b, srv.URL + "/healthz"
}

// writeFile replaces path atomically, so a poll never reads half a file.
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// runningPlanner is a planner running in this process with its own client
// and registry, as a separate process would.
type runningPlanner struct {
	t      *testing.T
	id     string
	p      *planner.Planner
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

func startPlanner(t *testing.T, id string, addrs []string, inventory string) *runningPlanner {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := planner.New(planner.Config{
		ID:            id,
		Client:        newClient(t, addrs),
		InventoryPath: inventory,
		Interval:      testInterval,
		ProbeTimeout:  time.Second,
		Rise:          2,
		Fall:          2,
		LeaseTTL:      time.Second,
		Logger:        newLogger(t).With("test_planner", id),
		Registerer:    reg,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rp := &runningPlanner{t: t, id: id, p: p, reg: reg, cancel: cancel, done: make(chan error, 1)}
	go func() { rp.done <- p.Run(ctx) }()
	t.Cleanup(rp.stop)
	return rp
}

// stop ends the planner and waits for Run to return (releasing the lease).
func (rp *runningPlanner) stop() {
	rp.cancel()
	if err := <-rp.done; err != nil {
		rp.t.Errorf("planner %s: Run returned %v", rp.id, err)
	}
	rp.done <- nil // stop may be called again
}

// metric reads one series of the planner's registry; labels are name,
// value pairs. A series that does not exist reads as -1.
func (rp *runningPlanner) metric(t *testing.T, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := rp.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, lp := range m.GetLabel() {
				have[lp.GetName()] = lp.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if have[labels[i]] != labels[i+1] {
					continue series
				}
			}
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	return -1
}

// waitMetric waits until a series reaches at least min.
func (rp *runningPlanner) waitMetric(t *testing.T, min float64, name string, labels ...string) {
	t.Helper()
	waitFor(t, fmt.Sprintf("%s %s%v >= %v", rp.id, name, labels, min), func() bool { return rp.metric(t, name, labels...) >= min })
}

// settle waits until the planner has compared its desired plan with the
// stored one n more times and found them equal: the planner has taken
// every health change in, and submitted nothing for n rounds.
func (rp *runningPlanner) settle(t *testing.T, n float64) {
	t.Helper()
	rp.waitMetric(t, rp.metric(t, "dnsplan_planner_plans_unchanged_total")+n, "dnsplan_planner_plans_unchanged_total")
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(longWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", longWait, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func rpcCtx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), 10*time.Second)
}

// newest returns the newest stored plan, nil when there is none.
func newest(t *testing.T, cl *client.Client) *pb.Plan {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	p, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Newest: true})
	if err != nil {
		return nil
	}
	return p
}

func allPlans(t *testing.T, cl *client.Client) []*pb.Plan {
	t.Helper()
	ctx, cancel := rpcCtx()
	defer cancel()
	resp, err := cl.ListPlans(ctx, &pb.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetPlans()
}

// weightsOf maps target id to weight for one endpoint of a plan.
func weightsOf(p *pb.Plan, name string) map[string]uint32 {
	for _, ep := range p.GetEndpoints() {
		if ep.GetName() == name {
			out := map[string]uint32{}
			for _, t := range ep.GetTargets() {
				out[t.GetId()] = t.GetWeight()
			}
			return out
		}
	}
	return nil
}

func equal(a, b map[string]uint32) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// waitPlan waits until the newest plan gives the endpoint these weights,
// and returns it.
func waitPlan(t *testing.T, cl *client.Client, name string, want map[string]uint32) *pb.Plan {
	t.Helper()
	var p *pb.Plan
	waitFor(t, fmt.Sprintf("a plan with %s = %v", name, want), func() bool {
		p = newest(t, cl)
		return p != nil && equal(weightsOf(p, name), want)
	})
	return p
}
