package enactor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/enactor"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The legacy enactor's tests. Helper names start with legacy so they stay
// apart from the fixed enactor's harness.

const (
	legacyRegional = "api.dnsplan.test."
	legacyFIPS     = "api-fips.dnsplan.test."
	legacyAccount  = "111122223333.api.dnsplan.test."
)

var legacyEndpoints = []string{legacyRegional, legacyFIPS, legacyAccount}

func startLegacyCluster(t *testing.T, nodes int, design contract.Design) *clustertest.Cluster {
	t.Helper()
	return clustertest.Start(t, clustertest.Options{Nodes: nodes, DNS: true, Design: design})
}

// newLegacyEnactor builds a legacy enactor on c; tune may change its
// config first. Its metrics go to the returned registry.
func newLegacyEnactor(t *testing.T, c *clustertest.Cluster, id string, tune func(*enactor.Config)) (*enactor.Enactor, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	cfg := enactor.Config{ID: id, Client: c.Client(), Legacy: true, Logger: c.Log, Registerer: reg}
	if tune != nil {
		tune(&cfg)
	}
	e, err := enactor.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e, reg
}

// runLegacyEnactor runs e until the test ends.
func runLegacyEnactor(t *testing.T, e *enactor.Enactor) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	// Runs until the cleanup below cancels it.
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("legacy enactor Run: %v", err)
			}
		case <-time.After(clustertest.LongWait):
			t.Error("legacy enactor did not stop")
		}
	})
}

func legacySubmit(t *testing.T, cl *client.Client, regionalTargets int) *pb.Plan {
	t.Helper()
	p := &pb.Plan{PlannerId: "test"}
	for _, name := range legacyEndpoints {
		ep := &pb.EndpointPlan{Name: name, Ttl: 5}
		for i := range regionalTargets {
			ep.Targets = append(ep.Targets, &pb.Target{Id: fmt.Sprintf("lb-%d", i+1), Address: fmt.Sprintf("192.0.2.%d", i+1), Weight: 10})
		}
		p.Endpoints = append(p.Endpoints, ep)
	}
	ctx := clustertest.Ctx(t)
	resp, err := cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: p})
	if err != nil {
		t.Fatalf("submit: %v", err)
	}
	stored, err := cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: resp.GetGeneration()})
	if err != nil {
		t.Fatal(err)
	}
	return stored
}

// legacyDig asks a node's DNS for name over UDP: the number of A records
// and the generation its _dnsplan TXT record names.
func legacyDig(t *testing.T, addr, name string) (addrs int, gen uint64, ok bool) {
	t.Helper()
	c := &dns.Client{Net: "udp", Timeout: time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, dns.TypeA)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		return 0, 0, false
	}
	for _, rr := range r.Answer {
		if _, isA := rr.(*dns.A); isA {
			addrs++
		}
	}
	m.SetQuestion("_dnsplan."+name, dns.TypeTXT)
	if r, _, err = c.Exchange(m, addr); err != nil {
		return 0, 0, false
	}
	for _, rr := range r.Answer {
		if txt, isTXT := rr.(*dns.TXT); isTXT && len(txt.Txt) > 0 {
			_, _ = fmt.Sscanf(txt.Txt[0], "generation=%d", &gen)
		}
	}
	return addrs, gen, true
}

// waitLegacyDNS waits until every node's DNS answers name with generation
// gen and wantAddrs addresses.
func waitLegacyDNS(t *testing.T, c *clustertest.Cluster, name string, gen uint64, wantAddrs int) {
	t.Helper()
	clustertest.WaitFor(t, clustertest.LongWait, "every node's DNS to serve the expected answer", func() bool {
		for _, addr := range c.DNSAddrs {
			n, g, ok := legacyDig(t, addr, name)
			if !ok || g != gen || n != wantAddrs {
				return false
			}
		}
		return true
	})
}

// legacyCounter reads a counter with one label from reg.
func legacyCounter(t *testing.T, reg prometheus.Gatherer, name, label, value string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == label && lp.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func legacyGenerations(t *testing.T, cl *client.Client) []uint64 {
	t.Helper()
	resp, err := cl.ListPlans(clustertest.Ctx(t), &pb.ListPlansRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []uint64
	for _, p := range resp.GetPlans() {
		out = append(out, p.GetGeneration())
	}
	slices.Sort(out)
	return out
}

// A legacy enactor on its own does what the old one did on a good day:
// each newest plan written endpoint by endpoint, LegacyDelay apart, and
// plans deleted by age, keeping the default 5 generations.
func TestLegacyEnactorWritesEndpointByEndpointAndCleansUpByAge(t *testing.T) {
	const delay = 50 * time.Millisecond
	c := startLegacyCluster(t, 1, contract.Legacy)
	cl := c.Client()
	e, reg := newLegacyEnactor(t, c, "az-a", func(cfg *enactor.Config) { cfg.LegacyDelay = delay })
	runLegacyEnactor(t, e)

	p1 := legacySubmit(t, cl, 2)
	waitLegacyDNS(t, c, legacyAccount, p1.GetGeneration(), 2)
	hist, err := cl.ListHistory(clustertest.Ctx(t), &pb.ListHistoryRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var writes []*pb.HistoryEvent
	for _, ev := range hist.GetEvents() {
		if ev.GetKind() == "legacy_apply" && ev.GetGeneration() == p1.GetGeneration() {
			writes = append(writes, ev)
		}
	}
	slices.SortFunc(writes, func(a, b *pb.HistoryEvent) int { return int(a.GetIndex()) - int(b.GetIndex()) })
	if len(writes) != len(legacyEndpoints) {
		t.Fatalf("%d legacy writes of generation %d, want one per endpoint: %v", len(writes), p1.GetGeneration(), writes)
	}
	for i, w := range writes {
		if w.GetEndpoint() != legacyEndpoints[i] || w.GetActor() != "az-a" {
			t.Errorf("write %d: %s by %s, want %s by az-a (the plan's order)", i, w.GetEndpoint(), w.GetActor(), legacyEndpoints[i])
		}
		// Stamps are the leader's clock at each proposal; the writes were
		// sent at least delay apart, one after the other.
		if i > 0 {
			if gap := w.GetTime().AsTime().Sub(writes[i-1].GetTime().AsTime()); gap < delay {
				t.Errorf("writes %d and %d only %s apart, want at least %s", i-1, i, gap, delay)
			}
		}
	}

	// One plan at a time, each served before the next: a legacy enactor
	// that falls behind the planner writes a plan its own age-based
	// clean-up then deletes, and blocks itself (the race needs no second
	// enactor).
	var newest *pb.Plan
	for range 7 {
		newest = legacySubmit(t, cl, 3)
		waitLegacyDNS(t, c, legacyAccount, newest.GetGeneration(), 3)
	}
	want := []uint64{}
	for g := newest.GetGeneration() - enactor.DefaultLegacyKeep; g <= newest.GetGeneration(); g++ {
		want = append(want, g)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "the age-based clean-up", func() bool {
		return slices.Equal(legacyGenerations(t, cl), want)
	})
	if n := legacyCounter(t, reg, "dnsplan_enactor_legacy_passes_total", "outcome", "applied"); n < 2 {
		t.Errorf("%v applied passes, want at least 2", n)
	}
}

// The race of the AWS summary with the legacy enactor's own Run loop as
// the delayed enactor: its one-time check passes on generation 2, it is
// held before its first write while another enactor (driven step by step)
// applies generation 12, then its write lands over 12 and the age-based
// clean-up deletes generation 2. Every node then answers the regional
// endpoint with no addresses, and the loop's own check refuses every later
// plan: it cannot heal.
func TestLegacyEnactorWritesItsStalePlanAndCannotHeal(t *testing.T) {
	c := startLegacyCluster(t, 3, contract.Legacy)
	cl := c.Client()
	b, _ := newLegacyEnactor(t, c, "az-b", nil)
	ctx := clustertest.Ctx(t)

	p1 := legacySubmit(t, cl, 2)
	if _, err := b.LegacyCheck(ctx, p1); err != nil {
		t.Fatal(err)
	}
	for _, ep := range legacyEndpoints {
		if err := b.LegacyWrite(ctx, p1.GetGeneration(), ep); err != nil {
			t.Fatal(err)
		}
	}
	waitLegacyDNS(t, c, legacyRegional, p1.GetGeneration(), 2)

	// az-a's loop: held at its first write of generation 2, after its
	// check; each later write reports itself and waits its turn too.
	var mu sync.Mutex
	calls := 0
	reached := make(chan int, 10)
	proceed := make(chan struct{}, 10)
	a, aReg := newLegacyEnactor(t, c, "az-a", func(cfg *enactor.Config) {
		cfg.BeforeApply = func(lease string, gen uint64) {
			if lease != "" || gen != 2 {
				return
			}
			mu.Lock()
			calls++
			n := calls
			mu.Unlock()
			reached <- n
			<-proceed
		}
	})
	p2 := legacySubmit(t, cl, 2)
	if p2.GetGeneration() != 2 {
		t.Fatalf("second plan is generation %d", p2.GetGeneration())
	}
	runLegacyEnactor(t, a)
	t.Cleanup(func() { close(proceed) }) // never leave the loop held
	legacyReached(t, reached, 1)

	var p12 *pb.Plan
	for range 10 {
		p12 = legacySubmit(t, cl, 3)
	}
	if _, err := b.LegacyCheck(ctx, p12); err != nil {
		t.Fatal(err)
	}
	for _, ep := range legacyEndpoints {
		if err := b.LegacyWrite(ctx, p12.GetGeneration(), ep); err != nil {
			t.Fatal(err)
		}
	}
	waitLegacyDNS(t, c, legacyRegional, p12.GetGeneration(), 3)

	// az-a's delay ends: its stale write lands, then az-b's clean-up.
	proceed <- struct{}{}
	legacyReached(t, reached, 2) // the first write is done
	waitLegacyDNS(t, c, legacyRegional, 2, 2)
	deleted, err := b.LegacyCleanup(ctx)
	if err != nil || !slices.Contains(deleted, 2) {
		t.Fatalf("legacy clean-up deleted %v, %v; want generation 2 among them", deleted, err)
	}
	waitLegacyDNS(t, c, legacyRegional, 2, 0)
	proceed <- struct{}{} // its second write now finds generation 2 gone

	// No way back: the loop's check refuses generation 12, and 13.
	p13 := legacySubmit(t, cl, 3)
	_, err = b.LegacyCheck(ctx, p13)
	if !errors.Is(err, enactor.ErrLegacyPlanMissing) {
		t.Fatalf("check of generation %d: %v, want ErrLegacyPlanMissing", p13.GetGeneration(), err)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "the loop to be refused by its own check twice", func() bool {
		return legacyCounter(t, aReg, "dnsplan_enactor_legacy_passes_total", "outcome", "plan_missing") >= 2
	})
	for _, addr := range c.DNSAddrs {
		if n, g, ok := legacyDig(t, addr, legacyRegional); !ok || n != 0 || g != 2 {
			t.Errorf("%s answers %d addresses, generation %d (ok %v); want none, generation 2", addr, n, g, ok)
		}
	}
	if n := legacyCounter(t, aReg, "dnsplan_enactor_legacy_passes_total", "outcome", "applied"); n != 0 {
		t.Errorf("the blocked loop completed %v passes", n)
	}
}

func legacyReached(t *testing.T, reached <-chan int, want int) {
	t.Helper()
	select {
	case n := <-reached:
		if n != want {
			t.Fatalf("write %d reached, want %d", n, want)
		}
	case <-time.After(clustertest.LongWait):
		t.Fatalf("write %d never reached", want)
	}
}

// A legacy enactor against nodes without --legacy writes nothing: the
// cluster does not serve the legacy RPCs.
func TestLegacyEnactorOnAFixedClusterWritesNothing(t *testing.T) {
	c := startLegacyCluster(t, 1, contract.Fixed)
	cl := c.Client()
	e, reg := newLegacyEnactor(t, c, "az-a", nil)
	runLegacyEnactor(t, e)
	p := legacySubmit(t, cl, 2)
	err := e.LegacyWrite(clustertest.Ctx(t), p.GetGeneration(), legacyRegional)
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("legacy write on a fixed node: %v, want Unimplemented", err)
	}
	clustertest.WaitFor(t, clustertest.LongWait, "a failed pass", func() bool {
		return legacyCounter(t, reg, "dnsplan_enactor_legacy_passes_total", "outcome", "error") >= 1
	})
	if _, err := cl.GetApplied(clustertest.Ctx(t), &pb.GetAppliedRequest{Endpoint: legacyRegional}); status.Code(err) != codes.NotFound {
		t.Errorf("regional endpoint: %v, want NotFound (never applied)", err)
	}
}

func TestLegacyConfig(t *testing.T) {
	cl, err := client.New([]string{"127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := enactor.New(enactor.Config{ID: "x", Client: cl, Legacy: true, LegacyDelay: -time.Second}); err == nil {
		t.Error("negative legacy delay accepted")
	}
	fixed, err := enactor.New(enactor.Config{ID: "x", Client: cl})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := fixed.LegacyCheck(ctx, &pb.Plan{Generation: 1}); err == nil {
		t.Error("a fixed enactor made a legacy check")
	}
	if err := fixed.LegacyWrite(ctx, 1, legacyRegional); err == nil {
		t.Error("a fixed enactor made a legacy write")
	}
	if _, err := fixed.LegacyCleanup(ctx); err == nil {
		t.Error("a fixed enactor made a legacy clean-up")
	}
}
