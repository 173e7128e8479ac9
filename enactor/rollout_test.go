package enactor_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/enactor"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Staged rollouts (rollout.go) on a real cluster. The waves are read from
// the audit history: one apply event per endpoint, and the endpoints of
// one ApplyPlan share its log index.

const canary = "198.51.100.7"

// rolloutEndpoints are n endpoint names, sorted as a rollout orders them.
func rolloutEndpoints(n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("e%02d.dnsplan.test.", i))
	}
	return out
}

// rolloutPlan serves every endpoint from 192.0.2.10; the first changed
// ones also from extra at weight w.
func rolloutPlan(names []string, changed int, extra string, w uint32) *pb.Plan {
	p := &pb.Plan{PlannerId: "test"}
	for i, name := range names {
		ts := []*pb.Target{{Id: "lb-a", Address: "192.0.2.10", Weight: 10}}
		if i < changed {
			ts = append(ts, &pb.Target{Id: "lb-new", Address: extra, Weight: w})
		}
		p.Endpoints = append(p.Endpoints, &pb.EndpointPlan{Name: name, Ttl: 30, Targets: ts})
	}
	return p
}

func submitPlan(t *testing.T, cl *client.Client, p *pb.Plan) uint64 {
	t.Helper()
	resp, err := cl.SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: p})
	if err != nil {
		t.Fatalf("submit plan: %v", err)
	}
	if resp.GetFrozen() {
		t.Fatalf("the plan froze the cluster: %s", resp.GetFreezeReason())
	}
	return resp.GetGeneration()
}

// waves returns the sizes of the applies of gen in log order: how many
// endpoints each ApplyPlan made serve it.
func waves(t *testing.T, cl *client.Client, gen uint64) []int {
	t.Helper()
	var sizes []int
	last := uint64(0)
	for _, ev := range history(t, cl, func(ev *pb.HistoryEvent) bool {
		return ev.GetKind() == "apply" && ev.GetGeneration() == gen && ev.GetOutcome() == "applied"
	}) {
		if ev.GetIndex() != last {
			sizes = append(sizes, 0)
			last = ev.GetIndex()
		}
		sizes[len(sizes)-1]++
	}
	return sizes
}

func sum(xs []int) int {
	n := 0
	for _, x := range xs {
		n += x
	}
	return n
}

// A plan that changes 10 of 20 endpoints, rolled out in waves 1, 50%,
// 100%: one endpoint, then four more (half of the ten changed), then the
// other five with the ten it leaves as they are; each wave after the
// previous one was read back and baked.
func TestRolloutAppliesWaveByWave(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Tune: noDoubt})
	cl := tc.Client()
	mon := watchMonotonic(t, tc)
	names := rolloutEndpoints(20)
	g1 := submitPlan(t, cl, rolloutPlan(names, 0, "", 0))
	waveList, err := enactor.ParseWaves("1,50%,100%")
	if err != nil {
		t.Fatal(err)
	}
	const bake = 300 * time.Millisecond
	es := startEnactors(t, tc, func(_ string, cfg *enactor.Config) { cfg.Waves, cfg.Bake = waveList, bake }, "az-a", "az-b")
	waitOneHolder(t, cl, es, lease0)
	waitServed(t, tc, cl, g1, names...)
	if got := waves(t, cl, g1); !slices.Equal(got, []int{1, 9, 10}) {
		// Every endpoint is new to the first plan: 1, then half of 20.
		t.Errorf("first plan's waves %v, want [1 9 10]", got)
	}

	g2 := submitPlan(t, cl, rolloutPlan(names, 10, canary, 10))
	waitServed(t, tc, cl, g2, names...)
	if got := waves(t, cl, g2); !slices.Equal(got, []int{1, 4, 15}) {
		t.Errorf("waves %v, want [1 4 15]", got)
	}
	evs := history(t, cl, func(ev *pb.HistoryEvent) bool {
		return ev.GetKind() == "apply" && ev.GetGeneration() == g2 && ev.GetOutcome() == "applied"
	})
	var starts []time.Time
	last := uint64(0)
	for _, ev := range evs {
		if ev.GetIndex() != last {
			starts = append(starts, ev.GetTime().AsTime())
			last = ev.GetIndex()
		}
	}
	for i := 1; i < len(starts); i++ {
		if gap := starts[i].Sub(starts[i-1]); gap < bake {
			t.Errorf("wave %d came %s after wave %d, less than the bake %s", i+1, gap, i, bake)
		}
	}
	if got := metricAll(t, es, "dnsplan_enactor_rollout_waves_total", "outcome", "passed"); got < 4 {
		t.Errorf("waves passed = %v, want at least 4", got)
	}
	mon.check()
}

// A newer plan marks the target the canary wave brought in unhealthy
// (weight 0) while the wave bakes: the rollout stops, the cluster freezes
// with the reason in its history, and the endpoints after the canary keep
// their old records. After ctl unfreeze the newest plan is applied.
func TestRolloutStopsWhenNewerPlanMarksNewTargetsUnhealthy(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Tune: noDoubt})
	cl := tc.Client()
	mon := watchMonotonic(t, tc)
	names := rolloutEndpoints(8)
	g1 := submitPlan(t, cl, rolloutPlan(names, 0, "", 0))
	waveList, err := enactor.ParseWaves("1,100%")
	if err != nil {
		t.Fatal(err)
	}
	es := startEnactors(t, tc, func(_ string, cfg *enactor.Config) { cfg.Waves, cfg.Bake = waveList, 3*time.Second }, "az-a")
	waitOneHolder(t, cl, es, lease0)
	waitServed(t, tc, cl, g1, names...)

	g2 := submitPlan(t, cl, rolloutPlan(names, len(names), canary, 10))
	waitServed(t, tc, cl, g2, names[0])
	// The canary serves the new target; the planner's next round finds it
	// failing its health checks.
	g3 := submitPlan(t, cl, rolloutPlan(names, len(names), canary, 0))

	var why string
	clustertest.WaitFor(t, clustertest.LongWait, "the cluster to freeze on the stopped rollout", func() bool {
		st, err := cl.Status(clustertest.Ctx(t))
		why = st.GetFreezeReason()
		return err == nil && st.GetFrozen()
	})
	for _, want := range []string{"stopped the staged rollout of generation", fmt.Sprintf("generation %d marks targets wave 1 brought in unhealthy", g3), names[0] + " " + canary} {
		if !strings.Contains(why, want) {
			t.Errorf("freeze reason %q does not say %q", why, want)
		}
	}
	if evs := history(t, cl, func(ev *pb.HistoryEvent) bool {
		return ev.GetKind() == "doubt" && ev.GetOutcome() == "frozen" && ev.GetActor() == "az-a" && ev.GetGeneration() == g2
	}); len(evs) != 1 {
		t.Errorf("history holds %d doubt events of az-a for generation %d, want 1", len(evs), g2)
	}
	// Before freezing, the enactor moved the canary to the newest plan:
	// its clients are not kept on the unhealthy target.
	waitServed(t, tc, cl, g3, names[0])
	// Frozen, nothing after the canary moved, on any node.
	time.Sleep(time.Second)
	for id, addr := range running(tc) {
		for _, name := range names[1:] {
			if a := servedBy(t, cl, addr, name); a.GetGeneration() != g1 {
				t.Errorf("node %s: %s serves generation %d after the rollout stopped, want %d", id, name, a.GetGeneration(), g1)
			}
		}
	}
	if got := metricAll(t, es, "dnsplan_enactor_rollout_waves_total", "outcome", "stopped"); got != 1 {
		t.Errorf("waves stopped = %v, want 1", got)
	}

	if _, err := cl.SetFreeze(clustertest.Ctx(t), &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
	waitServed(t, tc, cl, g3, names...)
	mon.check()
}

// An enactor that takes the lease over in the middle of a rollout goes on
// with the next wave: the waves are counted from what the cluster serves,
// not from what the first enactor remembers.
func TestRolloutContinuesAfterTakeover(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Tune: noDoubt})
	cl := tc.Client()
	names := rolloutEndpoints(20)
	g1 := submitPlan(t, cl, rolloutPlan(names, 0, "", 0))
	waveList, err := enactor.ParseWaves("2,50%,100%")
	if err != nil {
		t.Fatal(err)
	}
	a := startEnactor(t, tc, "az-a", func(cfg *enactor.Config) { cfg.Waves, cfg.Bake = waveList, time.Hour })
	// az-a applies the first plan's first wave, then bakes for an hour.
	clustertest.WaitFor(t, clustertest.LongWait, "az-a's first wave", func() bool {
		return slices.Equal(waves(t, cl, g1), []int{2})
	})
	a.stop(t) // releases the lease in the middle of the bake
	const bake = time.Second
	b := startEnactor(t, tc, "az-b", func(cfg *enactor.Config) { cfg.Waves, cfg.Bake = waveList, bake })
	waitOneHolder(t, cl, []*runningEnactor{b}, lease0)
	waitServed(t, tc, cl, g1, names...)
	if got := waves(t, cl, g1); !slices.Equal(got, []int{2, 8, 10}) {
		t.Errorf("waves %v, want [2 8 10]: az-b goes on with the second wave", got)
	}
	// az-b read the first wave back and baked it again before its own.
	acquired := history(t, cl, func(ev *pb.HistoryEvent) bool {
		return ev.GetKind() == "acquire" && ev.GetActor() == "az-b" && ev.GetOutcome() == "accepted"
	})
	applied := history(t, cl, func(ev *pb.HistoryEvent) bool {
		return ev.GetKind() == "apply" && ev.GetActor() == "az-b" && ev.GetOutcome() == "applied"
	})
	if len(acquired) == 0 || len(applied) == 0 {
		t.Fatalf("history: %d acquisitions and %d applies by az-b", len(acquired), len(applied))
	}
	if gap := applied[0].GetTime().AsTime().Sub(acquired[0].GetTime().AsTime()); gap < bake {
		t.Errorf("az-b applied its first wave %s after taking the lease over, less than the bake %s", gap, bake)
	}
	if got := sum(waves(t, cl, g1)); got != len(names) {
		t.Errorf("%d endpoints applied, want %d", got, len(names))
	}
}

// A node down during a rollout is what the cluster rides out: the waves
// are read back on the members that answer, and the rollout goes on
// without freezing anything.
func TestRolloutGoesOnWithANodeDown(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Tune: noDoubt})
	cl := tc.Client()
	names := rolloutEndpoints(10)
	waveList, err := enactor.ParseWaves("1,50%,100%")
	if err != nil {
		t.Fatal(err)
	}
	es := startEnactors(t, tc, func(_ string, cfg *enactor.Config) {
		cfg.Waves, cfg.Bake, cfg.ConvergeTimeout = waveList, 100*time.Millisecond, 500*time.Millisecond
	}, "az-a")
	waitOneHolder(t, cl, es, lease0)
	down := (tc.Leader() + 1) % len(tc.IDs)
	tc.Stop(down)
	g1 := submitPlan(t, cl, rolloutPlan(names, 0, "", 0))
	waitServed(t, tc, cl, g1, names...)
	if got := waves(t, cl, g1); !slices.Equal(got, []int{1, 4, 5}) {
		t.Errorf("waves %v, want [1 4 5]", got)
	}
	if st, err := cl.Status(clustertest.Ctx(t)); err != nil || st.GetFrozen() {
		t.Errorf("with %s down: frozen %v (%q), err %v", tc.IDs[down], st.GetFrozen(), st.GetFreezeReason(), err)
	}
}

// noDoubt lets the rollout tests change every endpoint at once and take
// a new target away again: what they test is the rollout, not the
// cluster's freeze on a plan changing too much, or the velocity limit.
func noDoubt(cfg *cluster.Config) {
	cfg.MaxPlanChange = 1
	cfg.MaxCapacityDrop = proto.Float64(1)
}
