package scenario

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/enactor"
	"github.com/dnsplan/dnsplan/internal/poll"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// The actors' ids, as in the AWS story: one enactor per availability zone.
const (
	plannerID = "planner"
	delayedID = "az-a" // the enactor that is delayed on an old plan
	otherID   = "az-b" // the enactor that applies the newest plan meanwhile
)

// nextPlan is the planner's next plan: the four endpoints, with a third
// load balancer behind the regional endpoint from the third plan on (added
// capacity, so an old plan written late also shows in the addresses).
func (r *run) nextPlan() *pb.Plan {
	r.planned++
	regional := []*pb.Target{
		{Id: "lb-1", Address: "192.0.2.11", Weight: 100},
		{Id: "lb-2", Address: "192.0.2.12", Weight: 100},
	}
	if r.planned >= 3 {
		regional = append(regional, &pb.Target{Id: "lb-3", Address: "192.0.2.13", Weight: 100})
	}
	ep := func(name string, targets ...*pb.Target) *pb.EndpointPlan {
		return &pb.EndpointPlan{Name: name, Ttl: 5, Targets: targets}
	}
	return &pb.Plan{PlannerId: plannerID, Endpoints: []*pb.EndpointPlan{
		ep(Regional, regional...),
		ep(fips, &pb.Target{Id: "lb-f1", Address: "192.0.2.21", Weight: 100}, &pb.Target{Id: "lb-f2", Address: "192.0.2.22", Weight: 100}),
		ep(ipv6, &pb.Target{Id: "lb-6a", Address: "2001:db8::11", Weight: 100}, &pb.Target{Id: "lb-6b", Address: "2001:db8::12", Weight: 100}),
		ep(account, &pb.Target{Id: "lb-c1", Address: "192.0.2.31", Weight: 100}, &pb.Target{Id: "lb-c2", Address: "192.0.2.32", Weight: 100}),
	}}
}

// submit stores the planner's next plan and returns it as stored.
func (r *run) submit(ctx context.Context) (*pb.Plan, error) {
	resp, err := r.cl.SubmitPlan(ctx, &pb.SubmitPlanRequest{Plan: r.nextPlan()})
	if err != nil {
		return nil, fmt.Errorf("planner: submit: %w", err)
	}
	return r.cl.GetPlan(ctx, &pb.GetPlanRequest{Generation: resp.GetGeneration()})
}

// submitMany stores plans until the newest is generation upTo and returns
// the newest; each is a separate SubmitPlan, as a planner makes them.
func (r *run) submitMany(ctx context.Context, upTo uint64) (first, newest *pb.Plan, err error) {
	for range upTo {
		p, err := r.submit(ctx)
		if err != nil {
			return nil, nil, err
		}
		if first == nil {
			first = p
		}
		newest = p
		if p.GetGeneration() >= upTo {
			return first, newest, nil
		}
	}
	return nil, nil, fmt.Errorf("planner: generation %d not reached", upTo)
}

// actorClient is a client of its own for enactor id, closed with the run.
func (s *stage) actorClient(id string) (*client.Client, func(), error) {
	c, err := s.c.client(auth.Identity{Role: auth.RoleEnactor, Name: id}, s.opts.Logger)
	if err != nil {
		return nil, nil, err
	}
	return c, func() { c.Close() }, nil
}

// loop is an enactor that Run drives, with the registry of its metrics.
type loop struct {
	id  string
	e   *enactor.Enactor
	reg *prometheus.Registry
}

// newEnactor builds an enactor of the run's design (legacy: the
// --legacy enactor; fixed: the real fixed one), with its own client and
// metrics. The legacy one is also the object whose steps the script
// drives one at a time.
func (s *stage) newEnactor(id string, legacy bool, cl *client.Client) (*loop, error) {
	reg := prometheus.NewRegistry()
	e, err := enactor.New(enactor.Config{
		ID:              id,
		Client:          cl,
		LeaseTTL:        leaseTTL,
		KeepLast:        keepGenerations,
		ConvergeTimeout: s.opts.StepTimeout,
		Legacy:          legacy,
		LegacyKeep:      keepGenerations,
		Logger:          s.opts.Logger,
		Registerer:      reg,
	})
	if err != nil {
		return nil, err
	}
	return &loop{id: id, e: e, reg: reg}, nil
}

// legacyBlocked is how many of the legacy enactor's passes its own
// one-time check refused because an applied plan was deleted.
func (l *loop) legacyBlocked() int {
	return l.count("dnsplan_enactor_legacy_passes_total", "plan_missing")
}

// count reads the enactor's counter metric at the given outcome label.
func (l *loop) count(metric, outcome string) int {
	mfs, err := l.reg.Gather()
	if err != nil {
		return 0
	}
	for _, mf := range mfs {
		if mf.GetName() != metric {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if lp.GetName() == "outcome" && lp.GetValue() == outcome {
					return int(m.GetCounter().GetValue())
				}
			}
		}
	}
	return 0
}

// recovery runs the enactor loops (Run, as `dnsplan enactor` does) until
// every node's DNS serves generation gen or newer for the regional
// endpoint with addresses, until every loop has been refused twice by its
// own legacy check (it will not get better), or until the recovery
// timeout. It reports whether the endpoint recovered, and how.
func (r *run) recovery(ctx context.Context, gen uint64, loops []*loop) (recovered bool, how string, err error) {
	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, l := range loops {
		// Each enactor runs as its own program would, until the recovery
		// window closes.
		wg.Go(func() { _ = l.e.Run(runCtx) })
	}
	began := time.Now()
	blocked := false
	werr := poll.Until(ctx, r.opts.RecoveryTimeout, "recovery", func() bool {
		recovered = true
		for i, addr := range r.c.dns {
			a := askDNS(ctx, r.c.ids[i], addr, Regional)
			recovered = recovered && a.Generation >= gen && !a.Empty()
		}
		if recovered {
			return true
		}
		blocked = true
		for _, l := range loops {
			blocked = blocked && l.legacyBlocked() >= 2
		}
		return blocked
	})
	took := time.Since(began).Round(time.Millisecond)
	cancel()
	wg.Wait()
	switch {
	case recovered:
		a, err := r.cl.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: Regional})
		if err != nil {
			return false, "", err
		}
		how = fmt.Sprintf("%s applied generation %d (token %d); every node served it %s after the loops started",
			a.GetEnactorId(), a.GetGeneration(), a.GetLeaseToken(), took)
		r.finding("recovered: every node served generation %d for %s %s after the enactor loops started, without help", gen, Regional, took)
	case blocked:
		n := 0
		for _, l := range loops {
			n += l.legacyBlocked()
		}
		how = fmt.Sprintf("blocked: the one-time check refused %d passes in %s (dnsplan_enactor_legacy_passes_total{outcome=\"plan_missing\"}); nothing written", n, took)
		r.finding("not recovered: every enactor's own check refused generation %d again and again; only an operator can repair the endpoint", gen)
	case werr != nil && ctx.Err() != nil:
		return false, "", werr
	default:
		how = fmt.Sprintf("not applied within %s", r.opts.RecoveryTimeout)
		r.finding("not recovered: generation %d was not served everywhere within %s", gen, r.opts.RecoveryTimeout)
	}
	return recovered, how, nil
}

// describeDeleted says which generations a clean-up deleted, and which of
// them an endpoint still points at (only the legacy design allows that).
func (r *run) describeDeleted(ctx context.Context, deleted []uint64) (string, error) {
	if len(deleted) == 0 {
		return "deleted nothing", nil
	}
	s := "deleted generations " + gens(deleted)
	applied, err := r.cl.AllApplied(ctx, false)
	if err != nil {
		return "", err
	}
	for _, a := range applied {
		if slices.Contains(deleted, a.GetGeneration()) {
			s += fmt.Sprintf("; including %d, which %s points at", a.GetGeneration(), a.GetEndpoint())
		}
	}
	return s, nil
}
