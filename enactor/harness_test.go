package enactor_test

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/enactor"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const (
	testTTL   = time.Second
	endpointA = "api.dnsplan.test."
	endpointB = "fips.dnsplan.test."
)

// running returns the gRPC addresses of the nodes still running, by id.
func running(c *clustertest.Cluster) map[string]string {
	out := map[string]string{}
	for i, id := range c.IDs {
		if c.Node(i) != nil {
			out[id] = c.GRPCAddrs[i]
		}
	}
	return out
}

// runningEnactor is one enactor in the test, with its own client (built
// with its pause gate, so Pause also holds its lease renewals) and its
// own metrics registry.
type runningEnactor struct {
	id     string
	e      *enactor.Enactor
	gate   *enactor.PauseGate
	reg    *prometheus.Registry
	cancel context.CancelFunc
	done   chan error
}

// startEnactor starts an enactor on c; tune may change its config first.
func startEnactor(t *testing.T, c *clustertest.Cluster, id string, tune func(*enactor.Config)) *runningEnactor {
	t.Helper()
	gate := enactor.NewPauseGate()
	reg := prometheus.NewRegistry()
	cfg := enactor.Config{
		ID:              id,
		Client:          c.Client(gate.ClientOption()),
		LeaseTTL:        testTTL,
		KeepLast:        3,
		ConvergeTimeout: 10 * time.Second,
		Logger:          c.Log,
		Registerer:      reg,
		Pause:           gate,
	}
	if tune != nil {
		tune(&cfg)
	}
	e, err := enactor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningEnactor{id: id, e: e, gate: gate, reg: reg, cancel: cancel, done: make(chan error, 1)}
	// The enactor runs until the test stops it or ends.
	go func() { r.done <- e.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels the enactor and waits for Run to return.
func (r *runningEnactor) stop(t *testing.T) {
	r.gate.Resume() // a paused enactor would otherwise finish only on ctx
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("enactor %s: Run: %v", r.id, err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(clustertest.LongWait):
		t.Errorf("enactor %s did not stop", r.id)
	}
}

func startEnactors(t *testing.T, c *clustertest.Cluster, tune func(id string, cfg *enactor.Config), ids ...string) []*runningEnactor {
	var out []*runningEnactor
	for _, id := range ids {
		out = append(out, startEnactor(t, c, id, func(cfg *enactor.Config) {
			if tune != nil {
				tune(id, cfg)
			}
		}))
	}
	return out
}

// holders returns the enactors that say they hold lease.
func holders(es []*runningEnactor, lease string) []*runningEnactor {
	var out []*runningEnactor
	for _, r := range es {
		if _, ok := r.e.Leases()[lease]; ok {
			out = append(out, r)
		}
	}
	return out
}

// waitOneHolder waits until exactly one enactor holds lease, and the
// cluster agrees, and returns it.
func waitOneHolder(t *testing.T, cl *client.Client, es []*runningEnactor, lease string) *runningEnactor {
	t.Helper()
	var h *runningEnactor
	clustertest.WaitFor(t, clustertest.LongWait, "exactly one holder of "+lease, func() bool {
		hs := holders(es, lease)
		if len(hs) != 1 {
			return false
		}
		l := leaseOf(t, cl, lease)
		if l == nil || l.GetHolder() != hs[0].id || l.GetToken() != hs[0].e.Leases()[lease] {
			return false
		}
		h = hs[0]
		return true
	})
	return h
}

func leaseOf(t *testing.T, cl *client.Client, name string) *pb.Lease {
	t.Helper()
	resp, err := cl.ListLeases(clustertest.Ctx(t), &pb.ListLeasesRequest{})
	if err != nil {
		return nil
	}
	for _, l := range resp.GetLeases() {
		if l.GetName() == name {
			return l
		}
	}
	return nil
}

// testPlan is a valid plan for the given endpoints, two targets each.
func testPlan(endpoints ...string) *pb.Plan {
	p := &pb.Plan{PlannerId: "test"}
	for _, name := range endpoints {
		p.Endpoints = append(p.Endpoints, &pb.EndpointPlan{Name: name, Ttl: 30, Targets: []*pb.Target{
			{Id: "lb-a", Address: "192.0.2.10", Weight: 10},
			{Id: "lb-b", Address: "192.0.2.11", Weight: 10},
		}})
	}
	return p
}

func submit(t *testing.T, cl *client.Client, endpoints ...string) uint64 {
	t.Helper()
	resp, err := cl.SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: testPlan(endpoints...)})
	if err != nil {
		t.Fatalf("submit plan: %v", err)
	}
	return resp.GetGeneration()
}

// servedBy returns what node addr's own replica serves for endpoint.
func servedBy(t *testing.T, cl *client.Client, addr, endpoint string) *pb.AppliedEndpoint {
	t.Helper()
	a, err := cl.GetAppliedOf(clustertest.Ctx(t), addr, endpoint)
	if err != nil {
		return nil
	}
	return a
}

// waitServed waits until every running node serves gen (exactly) for each
// endpoint, and returns the record of the first.
func waitServed(t *testing.T, c *clustertest.Cluster, cl *client.Client, gen uint64, endpoints ...string) *pb.AppliedEndpoint {
	t.Helper()
	var rec *pb.AppliedEndpoint
	clustertest.WaitFor(t, clustertest.LongWait, fmt.Sprintf("every node to serve generation %d for %v", gen, endpoints), func() bool {
		for _, addr := range running(c) {
			for _, ep := range endpoints {
				a := servedBy(t, cl, addr, ep)
				if a.GetGeneration() != gen {
					return false
				}
				rec = a
			}
		}
		return true
	})
	return rec
}

// monotonic watches every node's own replica (WatchApplied streams from
// the local state, what its DNS serves) and records any endpoint whose
// generation goes down on a node: invariant I1.
type monotonic struct {
	t      *testing.T
	cancel context.CancelFunc
	wg     sync.WaitGroup
	// mu guards last and violations, written by one goroutine per node.
	mu         sync.Mutex
	last       map[string]uint64 // node + " " + endpoint -> generation
	violations []string
	reported   int // violations already reported by check
}

func watchMonotonic(t *testing.T, c *clustertest.Cluster) *monotonic {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	m := &monotonic{t: t, cancel: cancel, last: map[string]uint64{}}
	for id, addr := range running(c) {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		// One stream per node: a node's own replica must never go back,
		// whatever the others do. It ends when the node or the test does.
		m.wg.Go(func() {
			defer cc.Close()
			stream, err := pb.NewEnactServiceClient(cc).WatchApplied(ctx, &pb.WatchAppliedRequest{})
			if err != nil {
				return
			}
			for {
				msg, err := stream.Recv()
				if err != nil {
					return
				}
				a := msg.GetEndpoint()
				key := id + " " + a.GetEndpoint()
				m.mu.Lock()
				if prev := m.last[key]; a.GetGeneration() < prev {
					m.violations = append(m.violations, fmt.Sprintf("node %s endpoint %s went from generation %d back to %d (enactor %s, token %d)",
						id, a.GetEndpoint(), prev, a.GetGeneration(), a.GetEnactorId(), a.GetLeaseToken()))
				}
				m.last[key] = a.GetGeneration()
				m.mu.Unlock()
			}
		})
	}
	// At the end, even of a test that failed early, report what was seen.
	t.Cleanup(func() { m.stop(); m.check() })
	return m
}

func (m *monotonic) stop() {
	m.cancel()
	m.wg.Wait()
}

// check fails the test if any generation went backwards so far (each
// violation is reported once), and returns how many (node, endpoint)
// pairs were observed.
func (m *monotonic) check() int {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, v := range m.violations[m.reported:] {
		m.t.Errorf("I1 violated: %s", v)
	}
	m.reported = len(m.violations)
	return len(m.last)
}

// history returns the cluster's audit events matching keep.
func history(t *testing.T, cl *client.Client, keep func(*pb.HistoryEvent) bool) []*pb.HistoryEvent {
	t.Helper()
	resp, err := cl.ListHistory(clustertest.Ctx(t), &pb.ListHistoryRequest{})
	if err != nil {
		return nil
	}
	var out []*pb.HistoryEvent
	for _, ev := range resp.GetEvents() {
		if keep(ev) {
			out = append(out, ev)
		}
	}
	return out
}

func planGenerations(t *testing.T, cl *client.Client) []uint64 {
	t.Helper()
	resp, err := cl.ListPlans(clustertest.Ctx(t), &pb.ListPlansRequest{})
	if err != nil {
		return nil
	}
	var gens []uint64
	for _, p := range resp.GetPlans() {
		gens = append(gens, p.GetGeneration())
	}
	slices.Sort(gens)
	return gens
}

// metric sums the value of every series of the named metric whose labels
// include the given name=value pairs (for a histogram: its count).
func metric(t *testing.T, reg prometheus.Gatherer, name string, labels ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
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
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// metricAll sums metric over several enactors.
func metricAll(t *testing.T, es []*runningEnactor, name string, labels ...string) float64 {
	t.Helper()
	var sum float64
	for _, r := range es {
		sum += metric(t, r.reg, name, labels...)
	}
	return sum
}

func describe(evs []*pb.HistoryEvent) string {
	var lines []string
	for _, ev := range evs {
		lines = append(lines, fmt.Sprintf("#%d %s %s gen=%d ep=%s token=%d %s %s", ev.GetIndex(), ev.GetKind(), ev.GetActor(),
			ev.GetGeneration(), ev.GetEndpoint(), ev.GetToken(), ev.GetOutcome(), ev.GetReason()))
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}
