package enactor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// fakeCluster scripts the cluster's answers so the apply loop's handling
// of each outcome can be checked step by step. The real cluster is in the
// enactor_test package's tests.
type fakeCluster struct {
	// mu guards everything below; cond signals new plans and applies.
	mu      sync.Mutex
	cond    *sync.Cond
	plans   []*pb.Plan
	applies []*pb.ApplyPlanRequest
	// answer decides an apply's answer; nil applies every endpoint.
	answer   func(*pb.ApplyPlanRequest) error
	frozen   bool
	token    uint64
	revoke   context.CancelFunc // ends the current holding
	cleanups int
	// quietWatch makes WatchPlans deliver nothing, like a stream served
	// by a node cut off from the quorum.
	quietWatch bool
	// watchErr, if set, is what WatchPlans returns at once: an answer
	// the client does not cure by reconnecting.
	watchErr error
	// results, if set, scripts the per-endpoint results of an answered
	// apply; the default applies every endpoint.
	results   func(*pb.ApplyPlanRequest) []*pb.EndpointResult
	readBacks int // GetAppliedOf calls
	// reports are the reports of doubt received, answered not frozen.
	reports []*pb.ReportDoubtRequest
}

func newFakeCluster() *fakeCluster {
	f := &fakeCluster{}
	f.cond = sync.NewCond(&f.mu)
	return f
}

func (f *fakeCluster) addPlan() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	gen := uint64(len(f.plans) + 1)
	f.plans = append(f.plans, &pb.Plan{Generation: gen, Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test."}}})
	f.cond.Broadcast()
	return gen
}

// HoldLease grants a new token at once every time the holder returns.
func (f *fakeCluster) HoldLease(ctx context.Context, name, holder string, _ time.Duration, fn func(context.Context, *pb.Lease)) error {
	for ctx.Err() == nil {
		hctx, cancel := context.WithCancel(ctx)
		f.mu.Lock()
		f.token++
		l := &pb.Lease{Name: name, Holder: holder, Token: f.token}
		f.revoke = cancel
		f.mu.Unlock()
		fn(hctx, l)
		cancel()
	}
	return ctx.Err()
}

func (f *fakeCluster) WatchPlans(ctx context.Context, from uint64, fn func(*pb.Plan) error) error {
	if f.watchErr != nil {
		return f.watchErr
	}
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	next := max(from, 1)
	f.mu.Lock()
	defer f.mu.Unlock()
	for ctx.Err() == nil {
		if f.quietWatch || next > uint64(len(f.plans)) {
			f.cond.Wait()
			continue
		}
		p := f.plans[next-1]
		next++
		f.mu.Unlock()
		err := fn(p)
		f.mu.Lock()
		if err != nil {
			return err
		}
	}
	return ctx.Err()
}

// GetPlan answers the newest-plan read.
func (f *fakeCluster) GetPlan(_ context.Context, req *pb.GetPlanRequest) (*pb.Plan, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !req.GetNewest() {
		return nil, status.Error(codes.Unimplemented, "fake: only newest")
	}
	if len(f.plans) == 0 {
		return nil, status.Error(codes.NotFound, "no plan is stored")
	}
	return f.plans[len(f.plans)-1], nil
}

func (f *fakeCluster) ApplyPlan(_ context.Context, req *pb.ApplyPlanRequest) (*pb.ApplyPlanResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies = append(f.applies, req)
	f.cond.Broadcast()
	if f.answer != nil {
		if err := f.answer(req); err != nil {
			return nil, err
		}
	}
	if f.results != nil {
		return &pb.ApplyPlanResponse{Results: f.results(req)}, nil
	}
	return &pb.ApplyPlanResponse{Results: []*pb.EndpointResult{{Endpoint: "api.dnsplan.test.", Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: req.GetGeneration()}}}, nil
}

func (f *fakeCluster) CleanupPlans(context.Context, *pb.CleanupPlansRequest) (*pb.CleanupPlansResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cleanups++
	return &pb.CleanupPlansResponse{}, nil
}

func (f *fakeCluster) ReportDoubt(_ context.Context, req *pb.ReportDoubtRequest) (*pb.ReportDoubtResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reports = append(f.reports, req)
	return &pb.ReportDoubtResponse{}, nil
}

// AllApplied answers nothing served: the fake keeps no records, and
// staged rollouts are tested against the real cluster.
func (f *fakeCluster) AllApplied(context.Context, bool) ([]*pb.AppliedEndpoint, error) {
	return nil, nil
}

func (f *fakeCluster) Status(context.Context) (*pb.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &pb.StatusResponse{Frozen: f.frozen, Members: []*pb.Member{{Id: "n1", GrpcAddr: "n1"}}}, nil
}

func (f *fakeCluster) GetAppliedOf(_ context.Context, _, endpoint string) (*pb.AppliedEndpoint, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readBacks++
	var gen uint64
	for _, a := range f.applies {
		gen = max(gen, a.GetGeneration())
	}
	return &pb.AppliedEndpoint{Endpoint: endpoint, Generation: gen}, nil
}

// sent returns "generation@token" of every apply so far.
func (f *fakeCluster) sent() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.applies {
		out = append(out, fmt.Sprintf("%d@%d", a.GetGeneration(), a.GetLeaseToken()))
	}
	return out
}

// startFake runs an enactor against f and stops it when the test ends.
func startFake(t *testing.T, f *fakeCluster) *Enactor {
	t.Helper()
	return startFakeWith(t, f, nil)
}

// startFakeWith is startFake with a chance to change the config first.
func startFakeWith(t *testing.T, f *fakeCluster, tune func(*Config)) *Enactor {
	t.Helper()
	cl, err := client.New([]string{"127.0.0.1:1"}) // never dialled: f stands in
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	cfg := Config{ID: "az-a", Client: cl, LeaseTTL: time.Second, ConvergeTimeout: time.Second}
	if tune != nil {
		tune(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.leases, e.plans, e.planReader, e.applier, e.reader = f, f, f, f, f
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Run until the test ends.
	go func() { defer close(done); _ = e.Run(ctx) }()
	t.Cleanup(func() { e.Resume(); cancel(); <-done })
	return e
}

// applies reads dnsplan_enactor_applies_total{outcome} from e's registry.
func applies(e *Enactor, outcome string) float64 {
	return counter(e, "dnsplan_enactor_applies_total", "outcome", outcome)
}

// counter reads a counter (or a histogram's count of samples) from e's
// registry: the series whose labels include the given name/value pairs
// (all of its series if none given).
func counter(e *Enactor, name string, labels ...string) float64 {
	mfs, err := e.cfg.Registerer.(prometheus.Gatherer).Gather()
	if err != nil {
		panic(err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				if !slices.ContainsFunc(m.GetLabel(), func(lp *dto.LabelPair) bool {
					return lp.GetName() == labels[i] && lp.GetValue() == labels[i+1]
				}) {
					continue series
				}
			}
			sum += m.GetCounter().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

// Fenced: the holder stops at once; the next holding applies the newest
// plan at once, with its new token.
func TestFencedGivesUpAndNextHoldingAppliesNewestAtOnce(t *testing.T) {
	f := newFakeCluster()
	f.answer = func(r *pb.ApplyPlanRequest) error {
		if r.GetLeaseToken() == 1 && r.GetGeneration() == 2 {
			return status.Error(codes.FailedPrecondition, "fenced: token 1 is superseded")
		}
		return nil
	}
	e := startFake(t, f)
	f.addPlan()
	clustertest.WaitFor(t, clustertest.LongWait, "generation 1 applied", func() bool { return slices.Equal(f.sent(), []string{"1@1"}) })
	f.addPlan()
	clustertest.WaitFor(t, clustertest.LongWait, "generation 2 fenced, then applied at once under token 2", func() bool {
		return slices.Equal(f.sent(), []string{"1@1", "2@1", "2@2"})
	})
	if got := applies(e, outcomeFenced); got != 1 {
		t.Errorf("fenced = %v, want 1", got)
	}
}

// NotFound: the deleted plan is skipped, not retried; the next one applies.
func TestDeletedPlanIsSkipped(t *testing.T) {
	f := newFakeCluster()
	f.answer = func(r *pb.ApplyPlanRequest) error {
		if r.GetGeneration() == 1 {
			return status.Error(codes.NotFound, "generation 1 is unknown or deleted")
		}
		return nil
	}
	e := startFake(t, f)
	f.addPlan()
	clustertest.WaitFor(t, clustertest.LongWait, "generation 1 refused", func() bool { return applies(e, outcomeNotFound) == 1 })
	f.addPlan()
	clustertest.WaitFor(t, clustertest.LongWait, "generation 2 applied", func() bool { return applies(e, outcomeApplied) == 1 })
	if got := f.sent(); !slices.Equal(got, []string{"1@1", "2@1"}) {
		t.Errorf("applies %v, want [1@1 2@1]", got)
	}
}

// refusal is the cluster's refusal of a call with reason r, as the node
// sends it: the reason's code and an ErrorInfo naming it.
func refusal(r contract.Reason, msg string) error {
	st, err := status.New(r.Code(), msg).WithDetails(&errdetails.ErrorInfo{Reason: string(r), Domain: contract.ErrorDomain})
	if err != nil {
		panic(err)
	}
	return st.Err()
}

// Frozen: the same plan is retried under the same lease until the freeze
// ends; Unavailable likewise.
func TestFrozenAndUnavailableAreRetried(t *testing.T) {
	for _, tc := range []struct {
		name    string
		err     error
		frozen  bool
		outcome string
	}{
		{"frozen", refusal(contract.ReasonFrozen, "frozen: applies are frozen: test"), true, outcomeFrozen},
		{"unavailable", status.Error(codes.Unavailable, "no leader"), false, outcomeError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeCluster()
			f.frozen = tc.frozen
			refuse := true
			f.answer = func(*pb.ApplyPlanRequest) error {
				if refuse {
					return tc.err
				}
				return nil
			}
			e := startFake(t, f)
			f.addPlan()
			clustertest.WaitFor(t, clustertest.LongWait, "two refused attempts", func() bool { return applies(e, tc.outcome) >= 2 })
			f.mu.Lock()
			refuse, f.frozen = false, false
			f.mu.Unlock()
			clustertest.WaitFor(t, clustertest.LongWait, "the plan applied", func() bool { return applies(e, outcomeApplied) == 1 })
			for _, s := range f.sent() {
				if s != "1@1" {
					t.Errorf("apply %s, want every attempt to be generation 1 under token 1", s)
				}
			}
			if got := applies(e, outcomeFenced); got != 0 {
				t.Errorf("fenced = %v, want 0", got)
			}
		})
	}
}

// A paused enactor holds the apply it decided on, sends nothing, and when
// resumed sends exactly that apply with its old token, even though its
// lease was lost meanwhile: the cluster, not the enactor, must refuse it.
func TestPausedEnactorSendsItsOldApplyWhenResumed(t *testing.T) {
	f := newFakeCluster()
	f.answer = func(r *pb.ApplyPlanRequest) error {
		if r.GetLeaseToken() == 1 && r.GetGeneration() == 2 {
			return status.Error(codes.FailedPrecondition, "fenced")
		}
		return nil
	}
	e := startFake(t, f)
	f.addPlan()
	clustertest.WaitFor(t, clustertest.LongWait, "generation 1 applied, read back and cleaned up", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.cleanups == 1
	})
	e.Pause()
	f.addPlan()
	clustertest.WaitFor(t, clustertest.LongWait, "the apply of generation 2 held at the gate", func() bool { return e.gate.Waiting() == 1 })
	f.mu.Lock()
	f.revoke() // the lease is lost while the enactor is frozen
	f.mu.Unlock()
	if got := f.sent(); len(got) != 1 {
		t.Fatalf("a paused enactor sent %v", got)
	}
	e.Resume()
	clustertest.WaitFor(t, clustertest.LongWait, "the old apply sent, fenced, and the newest applied under the next token", func() bool {
		return slices.Equal(f.sent(), []string{"1@1", "2@1", "2@2"})
	})
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	cl, err := client.New([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	for _, tc := range []struct {
		name string
		cfg  Config
		err  string
	}{
		{"defaults", Config{ID: "az-a", Client: cl}, ""},
		{"no id", Config{Client: cl}, "id is required"},
		{"no client", Config{ID: "az-a"}, "client is required"},
		{"negative shards", Config{ID: "az-a", Client: cl, Shards: -1}, "shards"},
		{"negative keep-last", Config{ID: "az-a", Client: cl, KeepLast: -1}, "keep-last"},
		{"negative ttl", Config{ID: "az-a", Client: cl, LeaseTTL: -time.Second}, "lease ttl"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := New(tc.cfg)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("New: %v, want an error about %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := e.cfg
			if c.LeaseTTL != DefaultLeaseTTL || c.Shards != 1 || c.KeepLast != DefaultKeepLast || c.ConvergeTimeout != DefaultConvergeTimeout {
				t.Errorf("defaults: %+v", c)
			}
		})
	}
	// Two enactors cannot share a registry: their series would collide.
	reg := prometheus.NewRegistry()
	if _, err := New(Config{ID: "az-a", Client: cl, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{ID: "az-b", Client: cl, Registerer: reg}); err == nil {
		t.Error("second enactor on one registry: no error")
	}
}

func TestShardOf(t *testing.T) {
	if ShardOf("api.dnsplan.test.", 1) != 0 {
		t.Error("one shard: not 0")
	}
	counts := make([]int, 4)
	for i := range 400 {
		s := ShardOf(fmt.Sprintf("ep%d.dnsplan.test.", i), 4)
		if s != ShardOf(fmt.Sprintf("ep%d.dnsplan.test.", i), 4) {
			t.Fatal("not stable")
		}
		counts[s]++
	}
	for s, n := range counts {
		if n < 50 {
			t.Errorf("shard %d got %d of 400 endpoints: %v", s, n, counts)
		}
	}
	if LeaseName(2) != "enactor/2" {
		t.Errorf("LeaseName(2) = %q", LeaseName(2))
	}
}

func TestPauseGate(t *testing.T) {
	g := NewPauseGate()
	if err := g.wait(context.Background()); err != nil {
		t.Fatalf("open gate: %v", err)
	}
	g.Pause()
	g.Pause() // idempotent
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := g.wait(ctx); err == nil {
		t.Error("closed gate with an ended context: no error")
	}
	released := make(chan error, 2)
	for range 2 {
		// Two waiters, released together by one Resume.
		go func() { released <- g.wait(context.Background()) }()
	}
	clustertest.WaitFor(t, clustertest.LongWait, "two waiters", func() bool { return g.Waiting() == 2 })
	g.Resume()
	g.Resume() // idempotent
	for range 2 {
		if err := <-released; err != nil {
			t.Error(err)
		}
	}
	if g.Paused() || g.Waiting() != 0 {
		t.Errorf("after Resume: paused %v, waiting %d", g.Paused(), g.Waiting())
	}
}

func TestHealthz(t *testing.T) {
	f := newFakeCluster()
	cl, err := client.New([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reg := prometheus.NewRegistry()
	e, err := New(Config{ID: "az-a", Client: cl, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	e.leases, e.plans, e.planReader, e.applier, e.reader = f, f, f, f, f
	srv := httptest.NewServer(e.Handler(reg))
	defer srv.Close()
	get := func(path string) (int, string) {
		resp, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, _ := get("/healthz"); code != http.StatusServiceUnavailable {
		t.Errorf("healthz before Run: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	// Run until the end of the test.
	go func() { defer close(done); _ = e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	clustertest.WaitFor(t, clustertest.LongWait, "healthz to report the lease", func() bool {
		code, body := get("/healthz")
		return code == http.StatusOK && strings.Contains(body, "holds enactor/0 (token 1)")
	})
	if _, body := get("/metrics"); !strings.Contains(body, "dnsplan_enactor_leases_held{lease=\"enactor/0\"} 1") {
		t.Errorf("metrics lack the held lease:\n%s", body)
	}
}

// A holder whose watch stream has gone quiet (its node cut off from the
// quorum) still learns of new plans, by its periodic newest-plan read, and
// applies them within about one lease TTL.
func TestQuietWatchNewestPlanReadApplies(t *testing.T) {
	f := newFakeCluster()
	f.quietWatch = true
	e := startFake(t, f)
	gen := f.addPlan()
	clustertest.WaitFor(t, 3*time.Second, "the plan applied without the watch", func() bool {
		return slices.Contains(f.sent(), fmt.Sprintf("%d@1", gen))
	})
	gen = f.addPlan()
	clustertest.WaitFor(t, 3*time.Second, "the next plan applied without the watch", func() bool {
		return slices.Contains(f.sent(), fmt.Sprintf("%d@1", gen))
	})
	if got := counter(e, "dnsplan_enactor_plans_found_by_read_total"); got != 2 {
		t.Errorf("plans found by the newest-plan read = %v, want 2", got)
	}
}

// A watch that ends with an answer reconnecting cannot cure (a plan over
// a message limit) is counted and logged at error level, not looped on
// silently; plans still arrive through the newest-plan read.
func TestPermanentWatchErrorIsLoud(t *testing.T) {
	f := newFakeCluster()
	f.watchErr = status.Error(codes.ResourceExhausted, "grpc: received message larger than max")
	var logs syncBuffer
	e := startFakeWith(t, f, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	gen := f.addPlan()
	clustertest.WaitFor(t, 3*time.Second, "the plan applied without the watch", func() bool {
		return slices.Contains(f.sent(), fmt.Sprintf("%d@1", gen))
	})
	if got := counter(e, "dnsplan_enactor_watch_errors_total", "code", "ResourceExhausted"); got < 1 {
		t.Errorf("watch errors counted = %v, want at least 1", got)
	}
	if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "ResourceExhausted") {
		t.Errorf("no error-level log naming the code; log:\n%s", logs.String())
	}
}

// syncBuffer is a bytes.Buffer safe for a logger's concurrent writes.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Hole 11: an apply answered STALE at the very generation it asked for
// means the endpoint serves it (the retry of a write whose first answer
// was lost). It counts as applied and is read back, not as a stale apply.
func TestStaleAtRequestedGenerationCountsAsApplied(t *testing.T) {
	f := newFakeCluster()
	f.results = func(r *pb.ApplyPlanRequest) []*pb.EndpointResult {
		return []*pb.EndpointResult{{Endpoint: "api.dnsplan.test.", Outcome: pb.Outcome_OUTCOME_STALE, AppliedGeneration: r.GetGeneration()}}
	}
	e := startFake(t, f)
	f.addPlan()
	clustertest.WaitFor(t, clustertest.LongWait, "the apply answered", func() bool {
		return applies(e, outcomeApplied)+applies(e, outcomeStale) == 1
	})
	clustertest.WaitFor(t, 5*time.Second, "the endpoint read back", func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.readBacks > 0
	})
	if got := applies(e, outcomeApplied); got != 1 {
		t.Errorf("applies counted applied = %v, want 1", got)
	}
	if got := counter(e, "dnsplan_enactor_endpoint_results_total", "outcome", outcomeStale); got != 0 {
		t.Errorf("endpoints counted stale = %v, want 0", got)
	}
}

// OUTCOME_REFUSED (the velocity limit, say): the enactor counts it by
// reason and applies the same generation again later, for the refused
// endpoints only, until the cluster takes it; no newer plan is needed.
func TestRefusedEndpointIsRetried(t *testing.T) {
	f := newFakeCluster()
	refuse := true
	f.results = func(r *pb.ApplyPlanRequest) []*pb.EndpointResult {
		if refuse {
			refuse = false
			return []*pb.EndpointResult{
				{Endpoint: "api.dnsplan.test.", Outcome: pb.Outcome_OUTCOME_REFUSED, AppliedGeneration: 0, Reason: "VELOCITY", Detail: "would drop 75% of capacity, limit 50%"},
				{Endpoint: "www.dnsplan.test.", Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: r.GetGeneration()},
			}
		}
		var out []*pb.EndpointResult
		for _, ep := range r.GetEndpoints() {
			out = append(out, &pb.EndpointResult{Endpoint: ep, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: r.GetGeneration()})
		}
		return out
	}
	e := startFake(t, f)
	f.addPlan()
	clustertest.WaitFor(t, 10*time.Second, "the refused endpoint applied on a retry", func() bool {
		return applies(e, outcomeApplied) == 2
	})
	if got := f.sent(); !slices.Equal(got, []string{"1@1", "1@1"}) {
		t.Errorf("applies %v, want generation 1 twice under token 1", got)
	}
	f.mu.Lock()
	retry := f.applies[len(f.applies)-1].GetEndpoints()
	f.mu.Unlock()
	if !slices.Equal(retry, []string{"api.dnsplan.test."}) {
		t.Errorf("retry named endpoints %v, want only the refused one", retry)
	}
	if got := counter(e, "dnsplan_enactor_refused_total", "reason", "velocity"); got != 1 {
		t.Errorf("refused endpoints counted under reason velocity = %v, want 1", got)
	}
}

// A retry of refused endpoints that gets no answer (the cluster is
// unavailable) is itself retried, without waiting for a newer plan.
func TestRefusedRetryThatFailsIsRetried(t *testing.T) {
	f := newFakeCluster()
	step := 0
	f.answer = func(*pb.ApplyPlanRequest) error {
		if step++; step == 2 {
			return status.Error(codes.Unavailable, "no leader")
		}
		return nil
	}
	f.results = func(r *pb.ApplyPlanRequest) []*pb.EndpointResult {
		outcome := pb.Outcome_OUTCOME_APPLIED
		if step == 1 {
			outcome = pb.Outcome_OUTCOME_REFUSED
		}
		return []*pb.EndpointResult{{Endpoint: "api.dnsplan.test.", Outcome: outcome, Reason: "VELOCITY"}}
	}
	e := startFake(t, f)
	f.addPlan()
	clustertest.WaitFor(t, 10*time.Second, "the refused endpoint applied after a failed retry", func() bool {
		return applies(e, outcomeApplied) == 1
	})
	if got := f.sent(); !slices.Equal(got, []string{"1@1", "1@1", "1@1"}) {
		t.Errorf("applies %v, want generation 1 three times: refused, unanswered, applied", got)
	}
}
