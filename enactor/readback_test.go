package enactor

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/cluster/clustertest"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// laggingReader stands for nodes whose replicas do not serve what the
// cluster committed (a stuck view, a bug): their read-back answers the
// generation before the one asked about. The cluster cannot be made to
// do that on purpose, so the fault is put where the enactor reads;
// everything else, the report and the freeze, is the real cluster's.
type laggingReader struct {
	Reader
	mu  sync.Mutex
	lag map[string]bool // gRPC address
}

func (r *laggingReader) GetAppliedOf(ctx context.Context, addr, endpoint string) (*pb.AppliedEndpoint, error) {
	a, err := r.Reader.GetAppliedOf(ctx, addr, endpoint)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && r.lag[addr] && a.GetGeneration() > 0 {
		a.Generation--
	}
	return a, err
}

// runLagging runs an enactor on a real cluster whose read-back sees the
// nodes lagging (by index) never serve a new plan.
func runLagging(t *testing.T, lagging ...int) (*clustertest.Cluster, *Enactor) {
	tc := clustertest.Start(t, clustertest.Options{})
	e, err := New(Config{ID: "az-a", Client: tc.Client(), LeaseTTL: time.Second, ConvergeTimeout: 300 * time.Millisecond, Logger: tc.Log})
	if err != nil {
		t.Fatal(err)
	}
	lr := &laggingReader{Reader: e.reader, lag: map[string]bool{}}
	for _, i := range lagging {
		lr.lag[tc.GRPCAddrs[i]] = true
	}
	e.reader = lr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return tc, e
}

func submitOne(t *testing.T, tc *clustertest.Cluster) uint64 {
	t.Helper()
	resp, err := tc.Client().SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: &pb.Plan{PlannerId: "test",
		Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test.", Ttl: 30, Targets: []*pb.Target{{Id: "a", Address: "192.0.2.10", Weight: 1}}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return resp.GetGeneration()
}

// Two of three members not serving an applied plan within the converge
// timeout are more than max_read_back_failures (0.5): the enactor reports
// it and the cluster freezes, naming them.
func TestReadBackFailuresOnMajorityFreeze(t *testing.T) {
	tc, e := runLagging(t, 1, 2)
	gen := submitOne(t, tc)
	var why string
	clustertest.WaitFor(t, clustertest.LongWait, "the cluster to freeze on the read-back report, and the enactor to hear so", func() bool {
		st, err := tc.Client().Status(clustertest.Ctx(t))
		why = st.GetFreezeReason()
		return err == nil && st.GetFrozen() && counter(e, "dnsplan_enactor_doubt_reports_total", "kind", "read_back", "answer", "frozen") >= 1
	})
	for _, want := range []string{`enactor "az-a" reports 2 of 3 members`, tc.IDs[1], tc.IDs[2], "not serving generation", "max_read_back_failures 0.5"} {
		if !strings.Contains(why, want) {
			t.Errorf("freeze reason %q does not say %q", why, want)
		}
	}
	if strings.Contains(why, tc.IDs[0]+",") || strings.Contains(why, "("+tc.IDs[0]) {
		t.Errorf("freeze reason %q names %s, which served generation %d", why, tc.IDs[0], gen)
	}
}

// One of three is a slow or cut-off node, which the cluster rides out:
// reported, and not frozen.
func TestReadBackFailureOnMinorityDoesNotFreeze(t *testing.T) {
	tc, e := runLagging(t, 2)
	submitOne(t, tc)
	clustertest.WaitFor(t, clustertest.LongWait, "a read-back report the cluster noted", func() bool {
		return counter(e, "dnsplan_enactor_doubt_reports_total", "kind", "read_back", "answer", "noted") >= 1
	})
	if st, err := tc.Client().Status(clustertest.Ctx(t)); err != nil || st.GetFrozen() {
		t.Fatalf("frozen %v (%q), err %v: one lagging member of three froze the cluster", st.GetFrozen(), st.GetFreezeReason(), err)
	}
}

// countingReader records the endpoints read back, by the generation they
// answered (the newest seen is what a read-back of that apply asks).
type countingReader struct {
	Reader
	mu    sync.Mutex
	asked map[string]int // endpoint name -> calls
}

func (r *countingReader) GetAppliedOf(ctx context.Context, addr, endpoint string) (*pb.AppliedEndpoint, error) {
	r.mu.Lock()
	r.asked[endpoint]++
	r.mu.Unlock()
	return r.Reader.GetAppliedOf(ctx, addr, endpoint)
}

func (r *countingReader) take() map[string]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	a := r.asked
	r.asked = map[string]int{}
	return a
}

// A plan that changes one endpoint of 100 is read back on that endpoint
// alone: the read-back costs what changed, not the plan's size (an apply
// is one command, so one endpoint of it proves a member applied it all).
func TestReadBackAsksWhatChanged(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	// A long lease: one holding applies both plans (a new holding compares
	// with no plan and reads back a sample of the first endpoints).
	e, err := New(Config{ID: "az-a", Client: tc.Client(), LeaseTTL: 30 * time.Second, Logger: tc.Log})
	if err != nil {
		t.Fatal(err)
	}
	cr := &countingReader{Reader: e.reader, asked: map[string]int{}}
	e.reader = cr
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })

	p := &pb.Plan{PlannerId: "test"}
	for i := range 100 {
		p.Endpoints = append(p.Endpoints, &pb.EndpointPlan{Name: fmt.Sprintf("e%03d.dnsplan.test.", i), Ttl: 30,
			Targets: []*pb.Target{{Id: "a", Address: "192.0.2.10", Weight: 1}, {Id: "b", Address: "192.0.2.11", Weight: 1}}})
	}
	converged := func(n float64) {
		clustertest.WaitFor(t, clustertest.LongWait, "the apply read back on every node", func() bool {
			return counter(e, "dnsplan_enactor_convergence_seconds") >= n
		})
	}
	if _, err := tc.Client().SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: p}); err != nil {
		t.Fatal(err)
	}
	converged(1)
	cr.take()
	p.Endpoints[42].Targets[1].Weight = 2
	if _, err := tc.Client().SubmitPlan(clustertest.Ctx(t), &pb.SubmitPlanRequest{Plan: p}); err != nil {
		t.Fatal(err)
	}
	converged(2)
	asked := cr.take()
	if len(asked) != 1 || asked["e042.dnsplan.test."] == 0 {
		t.Fatalf("read back after a plan changing e042 of 100 endpoints: %d endpoints asked (%v), want e042 alone", len(asked), firstKeys(asked, 5))
	}
}

func firstKeys(m map[string]int, n int) []string {
	keys := slices.Sorted(maps.Keys(m))
	return keys[:min(n, len(keys))]
}

// stuckReader stands for nodes that applied a previous holder's command
// and are stuck before the next: they serve nothing on the endpoints only
// the later command wrote.
type stuckReader struct {
	Reader
	mu    sync.Mutex
	stuck map[string]bool // gRPC address
	later map[string]bool // endpoint
}

func (r *stuckReader) GetAppliedOf(ctx context.Context, addr, endpoint string) (*pb.AppliedEndpoint, error) {
	a, err := r.Reader.GetAppliedOf(ctx, addr, endpoint)
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil && r.stuck[addr] && r.later[endpoint] {
		a.Generation = 0
	}
	return a, err
}

// A holder applied a plan to 15 of its 20 endpoints (the rest refused)
// and went away; the next holding applies the rest, its own command, and
// two of three nodes are stuck before it. The read-back must ask what
// that command wrote (the endpoints answered APPLIED), not the ones the
// earlier command did (answered STALE at the generation), and so see the
// two nodes lagging: the cluster freezes.
func TestReadBackAfterTakeoverAsksWhatItsCommandWrote(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{})
	ctx := clustertest.Ctx(t)
	p := &pb.Plan{PlannerId: "test"}
	var first, rest []string
	for i := range 20 {
		n := fmt.Sprintf("e%03d.dnsplan.test.", i)
		p.Endpoints = append(p.Endpoints, &pb.EndpointPlan{Name: n, Ttl: 30,
			Targets: []*pb.Target{{Id: "a", Address: "192.0.2.10", Weight: 1}}})
		if i < 15 {
			first = append(first, n)
		} else {
			rest = append(rest, n)
		}
	}
	sr, err := tc.Client().SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: p})
	if err != nil {
		t.Fatal(err)
	}
	gen := sr.GetGeneration()
	l, err := tc.Client().AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: LeaseName(0), Holder: "old", Ttl: durationpb.New(30 * time.Second)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Client().ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: gen, Endpoints: first, LeaseName: LeaseName(0), LeaseToken: l.GetToken(), EnactorId: "old"}); err != nil {
		t.Fatal(err)
	}
	if _, err := tc.Client().ReleaseLease(ctx, &pb.ReleaseLeaseRequest{Name: LeaseName(0), Holder: "old", Token: l.GetToken()}); err != nil {
		t.Fatal(err)
	}
	e, err := New(Config{ID: "az-a", Client: tc.Client(), LeaseTTL: 30 * time.Second, ConvergeTimeout: 300 * time.Millisecond, Logger: tc.Log})
	if err != nil {
		t.Fatal(err)
	}
	sr2 := &stuckReader{Reader: e.reader, stuck: map[string]bool{tc.GRPCAddrs[1]: true, tc.GRPCAddrs[2]: true}, later: map[string]bool{}}
	for _, n := range rest {
		sr2.later[n] = true
	}
	e.reader = sr2
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = e.Run(rctx) }()
	t.Cleanup(func() { cancel(); <-done })
	var frozen bool
	clustertest.WaitFor(t, clustertest.LongWait, "a freeze, or the enactor declaring convergence", func() bool {
		st, err := tc.Client().Status(ctx)
		frozen = err == nil && st.GetFrozen()
		return frozen || counter(e, "dnsplan_enactor_convergence_seconds") >= 1
	})
	if !frozen {
		t.Fatalf("2 of 3 nodes serve nothing on %v, written by this holding's own command, yet the enactor declared convergence", rest)
	}
}
