package planner_test

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsplan/dnsplan/backend"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/planner"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const (
	testInterval = 100 * time.Millisecond
	endpoint     = "api.dnsplan.test."
)

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

func startPlanner(t *testing.T, c *clustertest.Cluster, id, inventory string) *runningPlanner {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := planner.New(planner.Config{
		ID:            id,
		Client:        c.Client(),
		InventoryPath: inventory,
		Interval:      testInterval,
		ProbeTimeout:  time.Second,
		Rise:          2,
		Fall:          2,
		LeaseTTL:      time.Second,
		Logger:        c.Log.With("test_planner", id),
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
	clustertest.WaitFor(t, clustertest.LongWait, fmt.Sprintf("%s %s%v >= %v", rp.id, name, labels, min), func() bool {
		return rp.metric(t, name, labels...) >= min
	})
}

// settle waits until the planner has compared its desired plan with the
// stored one n more times and found them equal: the planner has taken
// every health change in, and submitted nothing for n rounds.
func (rp *runningPlanner) settle(t *testing.T, n float64) {
	t.Helper()
	rp.waitMetric(t, rp.metric(t, "dnsplan_planner_plans_unchanged_total")+n, "dnsplan_planner_plans_unchanged_total")
}

// newest returns the newest stored plan, nil when there is none.
func newest(t *testing.T, cl *client.Client) *pb.Plan {
	t.Helper()
	p, err := cl.GetPlan(clustertest.Ctx(t), &pb.GetPlanRequest{Newest: true})
	if err != nil {
		return nil
	}
	return p
}

func allPlans(t *testing.T, cl *client.Client) []*pb.Plan {
	t.Helper()
	resp, err := cl.ListPlans(clustertest.Ctx(t), &pb.ListPlansRequest{})
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
	clustertest.WaitFor(t, clustertest.LongWait, fmt.Sprintf("a plan with %s = %v", name, want), func() bool {
		p = newest(t, cl)
		return p != nil && equal(weightsOf(p, name), want)
	})
	return p
}
