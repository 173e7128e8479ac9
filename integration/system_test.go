package integration

import (
	"context"
	"fmt"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/backend"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/clustertest"
	"github.com/dnsplan/dnsplan/enactor"
	"github.com/dnsplan/dnsplan/planner"
	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const (
	endpoint = "api.dnsplan.test."
	leaseTTL = time.Second
)

// system is a cluster with DNS, four backends, planners, enactors and a
// probe, all stopped at the test's end.
type system struct {
	t        *testing.T
	c        *clustertest.Cluster
	cl       *client.Client
	backends []*backend.Backend
	addrs    []string // the backends' DNS addresses, by index
	probe    *probe.Prober
	enactors map[string]*runningEnactor
	// mu guards enactors.
	mu sync.Mutex
}

type runningEnactor struct {
	e    *enactor.Enactor
	stop context.CancelFunc
	done chan struct{}
}

func newSystem(t *testing.T) *system {
	c := clustertest.Start(t, clustertest.Options{DNS: true})
	s := &system{t: t, c: c, cl: c.Client(), enactors: map[string]*runningEnactor{}}
	var inv strings.Builder
	fmt.Fprintf(&inv, "zone: dnsplan.test.\nendpoints:\n  - name: %s\n    ttl: 30\n    targets:\n", endpoint)
	for i := range 4 {
		b := backend.New(fmt.Sprintf("backend%d", i+1))
		srv := httptest.NewServer(b.Handler())
		t.Cleanup(srv.Close)
		s.backends = append(s.backends, b)
		s.addrs = append(s.addrs, fmt.Sprintf("192.0.2.%d", 11+i))
		fmt.Fprintf(&inv, "      - {id: lb-%d, address: %s, capacity: 100, check: %q}\n", i+1, s.addrs[i], srv.URL+"/healthz")
	}
	parsed, err := planner.ParseInventory([]byte(inv.String()))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"planner1", "planner2"} {
		p, err := planner.New(planner.Config{ID: id, Client: c.Client(), Inventory: parsed,
			Interval: 100 * time.Millisecond, ProbeTimeout: time.Second, LeaseTTL: leaseTTL,
			Logger: c.Log.With("planner", id), Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		s.goRun(p.Run)
	}
	for _, id := range []string{"az-a", "az-b", "az-c"} {
		s.startEnactor(id)
	}
	var nodes []probe.Node
	for i, addr := range c.DNSAddrs {
		nodes = append(nodes, probe.Node{Name: c.IDs[i], DNS: addr})
	}
	s.probe, err = probe.New(probe.Config{Nodes: nodes, Cluster: c.Client(), Endpoints: []string{endpoint},
		Interval: 20 * time.Millisecond, Logger: c.Log})
	if err != nil {
		t.Fatal(err)
	}
	s.goRun(s.probe.Run)
	return s
}

// goRun runs f until the test ends.
func (s *system) goRun(f func(context.Context) error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := f(ctx); err != nil {
			s.t.Errorf("stopped with %v", err)
		}
	}()
	s.t.Cleanup(func() { cancel(); <-done })
}

func (s *system) startEnactor(id string) {
	gate := enactor.NewPauseGate()
	e, err := enactor.New(enactor.Config{ID: id, Client: s.c.Client(gate.ClientOption()), LeaseTTL: leaseTTL,
		Pause: gate, Logger: s.c.Log.With("enactor", id), Registerer: prometheus.NewRegistry()})
	if err != nil {
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &runningEnactor{e: e, stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		_ = e.Run(ctx)
	}()
	s.t.Cleanup(func() { e.Resume(); cancel(); <-r.done })
	s.mu.Lock()
	s.enactors[id] = r
	s.mu.Unlock()
}

// holder returns the enactor holding enactor/0, as the cluster says.
func (s *system) holder() string {
	s.t.Helper()
	var id string
	clustertest.WaitFor(s.t, clustertest.LongWait, "an enactor holding enactor/0", func() bool {
		resp, err := s.cl.ListLeases(clustertest.Ctx(s.t), &pb.ListLeasesRequest{})
		if err != nil {
			return false
		}
		for _, l := range resp.GetLeases() {
			if l.GetName() == enactor.LeaseName(0) && l.GetExpiresAt().AsTime().After(time.Now()) {
				id = l.GetHolder()
				return true
			}
		}
		return false
	})
	return id
}

// answers returns the sorted A records node i serves for the endpoint.
func (s *system) answers(i int) []string {
	m := new(dns.Msg)
	m.SetQuestion(endpoint, dns.TypeA)
	r, _, err := (&dns.Client{Timeout: time.Second}).Exchange(m, s.c.DNSAddrs[i])
	if err != nil {
		return nil
	}
	var out []string
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			out = append(out, a.A.String())
		}
	}
	slices.Sort(out)
	return out
}

// waitDNS waits until every node answers exactly want.
func (s *system) waitDNS(what string, want ...string) {
	s.t.Helper()
	slices.Sort(want)
	for i := range s.c.IDs {
		clustertest.WaitFor(s.t, clustertest.LongWait, fmt.Sprintf("%s: node %s answers %v", what, s.c.IDs[i], want), func() bool {
			return slices.Equal(s.answers(i), want)
		})
	}
}

func (s *system) newest() *pb.Plan {
	p, err := s.cl.GetPlan(clustertest.Ctx(s.t), &pb.GetPlanRequest{Newest: true})
	if err != nil {
		s.t.Fatal(err)
	}
	return p
}

func (s *system) checkProbe() {
	s.t.Helper()
	sum := s.probe.Summary()
	if len(sum.Violations) > 0 {
		s.t.Fatalf("the probe saw violations: %+v", sum.Violations)
	}
	if sum.Rounds == 0 {
		s.t.Fatal("the probe never ran")
	}
}

// Health in, DNS out: a failing target leaves every node's answers and
// comes back when it recovers; with every target failing the endpoint fails
// open; only one planner submits for each change. The probe sees no
// violation throughout.
func TestHealthDrivesDNS(t *testing.T) {
	s := newSystem(t)
	all := slices.Clone(s.addrs)
	s.waitDNS("start", all...)

	before := s.newest().GetGeneration()
	s.backends[0].Fail()
	s.waitDNS("lb-1 failed", all[1:]...)
	after := s.newest()
	if after.GetGeneration() != before+1 {
		t.Fatalf("one health change made generations %d..%d: two planners submitted", before, after.GetGeneration())
	}
	s.backends[0].Recover()
	s.waitDNS("lb-1 recovered", all...)

	// Fail targets one at a time, then the last: the endpoint fails open
	// and is never empty. The velocity limit (50%) is judged against the
	// highest capacity served within the window, so the third step (a 75%
	// drop from all four) waits until the all-four record has left the
	// window; a short window keeps that wait short.
	if _, err := s.cl.SetConfig(clustertest.Ctx(t), &pb.SetConfigRequest{VelocityWindow: durationpb.New(time.Second)}); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		s.backends[i].Fail()
		s.waitDNS(fmt.Sprintf("lb-1..%d failed", i+1), all[i+1:]...)
	}
	s.backends[3].Fail()
	s.waitDNS("every target failed: fail open", all...)
	for _, b := range s.backends {
		b.Recover()
	}
	s.checkProbe()
}

// The active enactor killed, then another frozen past its lease: each time
// another takes over and applies the next plan, and when the frozen one
// wakes nothing regresses (the probe watches every node throughout). The
// enactor package shows the woken enactor's in-flight apply being fenced.
func TestEnactorFailover(t *testing.T) {
	s := newSystem(t)
	all := slices.Clone(s.addrs)
	s.waitDNS("start", all...)

	killed := s.holder()
	s.mu.Lock()
	r := s.enactors[killed]
	s.mu.Unlock()
	r.stop()
	<-r.done
	s.backends[1].Fail()
	s.waitDNS("after killing "+killed, all[0], all[2], all[3])
	if h := s.holder(); h == killed {
		t.Fatalf("killed enactor %s still holds the lease", h)
	}

	frozen := s.holder()
	s.mu.Lock()
	r = s.enactors[frozen]
	s.mu.Unlock()
	r.e.Pause()
	s.backends[1].Recover()
	s.waitDNS("after freezing "+frozen, all...)
	if h := s.holder(); h == frozen {
		t.Fatalf("frozen enactor %s still holds the lease", h)
	}
	r.e.Resume()
	s.backends[2].Fail()
	s.waitDNS("after waking "+frozen, all[0], all[1], all[3])
	s.checkProbe()
}

// Freeze stops every apply; unfreeze lets the waiting plan through.
func TestFreezeHoldsPlans(t *testing.T) {
	s := newSystem(t)
	all := slices.Clone(s.addrs)
	s.waitDNS("start", all...)
	if _, err := s.cl.SetFreeze(clustertest.Ctx(t), &pb.SetFreezeRequest{Frozen: true, Reason: "test"}); err != nil {
		t.Fatal(err)
	}
	s.backends[3].Fail()
	// The planner stores the new plan, but no enactor may apply it.
	clustertest.WaitFor(t, clustertest.LongWait, "the plan without lb-4", func() bool {
		for _, tg := range s.newest().GetEndpoints()[0].GetTargets() {
			if tg.GetId() == "lb-4" {
				return tg.GetWeight() == 0
			}
		}
		return false
	})
	waitRefusal := time.Now().Add(3 * leaseTTL)
	for time.Now().Before(waitRefusal) {
		for i := range s.c.IDs {
			if got := s.answers(i); !slices.Equal(got, all) {
				t.Fatalf("node %s answers %v while frozen", s.c.IDs[i], got)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, err := s.cl.SetFreeze(clustertest.Ctx(t), &pb.SetFreezeRequest{Frozen: false}); err != nil {
		t.Fatal(err)
	}
	s.waitDNS("unfrozen", all[:3]...)
	s.checkProbe()
}
