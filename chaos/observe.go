package chaos

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/probe"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Observer pacing.
const (
	readPause     = 20 * time.Millisecond
	probeInterval = 100 * time.Millisecond
	replicaEvery  = 50 * time.Millisecond
	auditEvery    = 500 * time.Millisecond
)

// startObservers starts what watches the state, each until ctx ends:
//
//   - one reader per endpoint, on its own client, making linearizable
//     GetApplied reads back to back (each recorded for the
//     linearizability check);
//   - the probe (package probe) on every node's DNS: I1 (a node's answer
//     goes back to an older generation) and I2 (an empty answer after
//     addresses);
//   - a replica check on every running node's state: I2 (an applied
//     endpoint resolves to no address) and I3 (an applied generation's
//     plan is gone);
//   - the audit history, fetched often enough that its bound (the newest
//     1,000 events) loses nothing, and merged by index, for I4 and I5;
//   - every node's Status, for the L3 bound: no node hangs.
func (r *run) startObservers(ctx context.Context, wg *sync.WaitGroup) error {
	r.observe, r.observers = ctx, wg
	for _, ep := range endpoints {
		c, err := r.newClient(asObserver, client.WithCallTimeout(time.Second), client.WithRetryBudget(3*time.Second))
		if err != nil {
			return err
		}
		actor := "reader-" + shortName(ep)
		wg.Go(func() {
			for ctx.Err() == nil {
				r.rec.read(ctx, c, actor, ep)
				select {
				case <-ctx.Done():
				case <-time.After(readPause):
				}
			}
		})
	}

	var nodes []probe.Node
	for i := range r.cluster.Slots() {
		nodes = append(nodes, probe.Node{Name: r.cluster.ID(i), DNS: r.cluster.Addrs(i).DNS})
	}
	if err := r.startProbe(ctx, nodes); err != nil {
		return err
	}
	sc, err := r.newClient(asObserver, client.WithCallTimeout(statusBound))
	if err != nil {
		return err
	}
	r.status = newStatusCheck(r, sc)
	wg.Go(func() { r.status.run(ctx) })

	wg.Go(func() {
		for {
			r.replicas.round()
			select {
			case <-ctx.Done():
				return
			case <-time.After(replicaEvery):
			}
		}
	})

	ac, err := r.newClient(asObserver, client.WithCallTimeout(time.Second), client.WithRetryBudget(2*time.Second))
	if err != nil {
		return err
	}
	r.auditClient = ac
	wg.Go(func() {
		for {
			_ = r.audit.fetch(ctx, ac, r.rec) // tried again next time
			select {
			case <-ctx.Done():
				return
			case <-time.After(auditEvery):
			}
		}
	})
	return nil
}

// startProbe starts a probe of nodes' DNS until ctx ends, its violations
// forwarded to the run's and every answer given to the DNS check.
func (r *run) startProbe(ctx context.Context, nodes []probe.Node) error {
	p, err := probe.New(probe.Config{
		Nodes:     nodes,
		Endpoints: endpoints,
		Interval:  probeInterval,
		Timeout:   300 * time.Millisecond,
		Logger:    r.cfg.Logger,
		Observe:   r.dns.observe,
	})
	if err != nil {
		return err
	}
	r.mu.Lock()
	r.probers = append(r.probers, p)
	r.mu.Unlock()
	r.observers.Go(func() { _ = p.Run(ctx) })
	r.observers.Go(func() { r.forwardProbe(ctx, p) })
	return nil
}

// probeNode probes node i's DNS from now on, until the returned stop: a
// node added during the run is asked from its first second.
func (r *run) probeNode(i int) (stop func(), err error) {
	ctx, cancel := context.WithCancel(r.observe)
	if err := r.startProbe(ctx, []probe.Node{{Name: r.cluster.ID(i), DNS: r.cluster.Addrs(i).DNS}}); err != nil {
		cancel()
		return nil, err
	}
	return cancel, nil
}

// probeSummary adds up what the probes saw.
func (r *run) probeSummary() probe.Summary {
	r.mu.Lock()
	probers := slices.Clone(r.probers)
	r.mu.Unlock()
	var sum probe.Summary
	for _, p := range probers {
		s := p.Summary()
		sum.Queries += s.Queries
		sum.Violations = append(sum.Violations, s.Violations...)
	}
	return sum
}

// removeNode removes node i from the cluster's configuration, retrying for
// a while: a membership change needs a leader.
func (r *run) removeNode(i int) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		_, err := r.adminClient.RemoveServer(ctx, &pb.RemoveServerRequest{Id: r.cluster.ID(i)})
		if err == nil || client.Reason(err) == contract.ReasonNotFound {
			return nil
		}
		if !sleepCtx(ctx, 200*time.Millisecond) {
			return err
		}
	}
}

// shortName is an endpoint's first label, for actor names.
func shortName(ep string) string {
	for i, c := range ep {
		if c == '.' {
			return ep[:i]
		}
	}
	return ep
}

// forwardProbe turns the probe's violations into the run's, as they come,
// so that the first one can stop the run.
func (r *run) forwardProbe(ctx context.Context, p *probe.Prober) {
	seen := 0
	for {
		s := p.Summary()
		for _, v := range s.Violations[seen:] {
			r.rec.violate(Violation{Invariant: v.Invariant, Source: "dns", Node: v.Node, Endpoint: v.Endpoint,
				Detail: v.Detail, At: int64(v.At.Sub(r.rec.start))})
		}
		seen = len(s.Violations)
		select {
		case <-ctx.Done():
			return
		case <-time.After(probeInterval):
		}
	}
}

// replicaCheck reads every running node's replica, locked, so that what
// it sees is one consistent state: the applied records and the plans they
// name, at one log index.
type replicaCheck struct {
	r *run
	// mu guards reported, the (node, invariant, endpoint, generation)
	// already reported, so a lasting breach is reported once.
	mu       sync.Mutex
	reported map[string]bool
	// served learns the record of every observed endpoint in every
	// stored plan, for the judgement of the applied sequences.
	served *servedCheck
}

func newReplicaCheck(r *run) *replicaCheck {
	return &replicaCheck{r: r, reported: map[string]bool{}, served: newServedCheck()}
}

func (c *replicaCheck) round() {
	for i := range c.r.cluster.Slots() {
		id := c.r.cluster.ID(i)
		n := c.r.cluster.Node(i)
		if n == nil {
			continue
		}
		type breach struct {
			key string // what makes a lasting breach one breach
			v   Violation
		}
		var found []breach
		n.State(func(s *fsm.State) {
			for _, p := range s.PlansFrom(0) {
				for _, ep := range p.GetEndpoints() {
					if slices.Contains(endpoints, ep.GetName()) && !c.served.knows(ep.GetName(), p.GetGeneration()) {
						c.served.learn(ep.GetName(), servedOf(ep, p))
					}
				}
			}
			for _, a := range s.AppliedAll() {
				ep, gen := a.GetEndpoint(), a.GetGeneration()
				if s.Plan(gen) == nil {
					found = append(found, breach{fmt.Sprintf("%s|I3|%s|%d", id, ep, gen), Violation{Invariant: "I3", Source: "replica", Node: id, Endpoint: ep,
						Detail: fmt.Sprintf("generation %d is applied, but its plan is deleted (log index %d)", gen, s.LastIndex())}})
				}
				if !hasAddress(a) {
					found = append(found, breach{fmt.Sprintf("%s|I2|%s|%d", id, ep, gen), Violation{Invariant: "I2", Source: "replica", Node: id, Endpoint: ep,
						Detail: fmt.Sprintf("generation %d is applied and resolves to no address (log index %d)", gen, s.LastIndex())}})
				}
			}
		})
		for _, b := range found {
			c.mu.Lock()
			dup := c.reported[b.key]
			c.reported[b.key] = true
			c.mu.Unlock()
			if !dup {
				c.r.rec.violate(b.v)
			}
		}
	}
}

// finalState is what the cluster holds once every fault is healed and
// the actors stopped.
type finalState struct {
	Plans   map[uint64]bool   `json:"-"`
	Applied map[string]uint64 `json:"applied"`
	Err     string            `json:"error,omitempty"`
}

// finalState reads, linearizably, every endpoint once more (recorded, so
// the linearizability check covers durability of acknowledged applies
// across the run's restarts), the stored plans and the applied records,
// and fetches the audit history a last time.
func (r *run) finalState(ctx context.Context) finalState {
	c := r.auditClient
	f := finalState{Plans: map[uint64]bool{}, Applied: map[string]uint64{}}
	for _, ep := range endpoints {
		r.rec.read(ctx, c, "final", ep)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	plans, err := c.AllPlans(ctx, false)
	if err != nil {
		f.Err = fmt.Sprintf("listing plans: %v", err)
		return f
	}
	for _, p := range plans {
		f.Plans[p.GetGeneration()] = true
	}
	applied, err := c.AllApplied(ctx, false)
	if err != nil {
		f.Err = fmt.Sprintf("listing applied endpoints: %v", err)
		return f
	}
	for _, a := range applied {
		f.Applied[a.GetEndpoint()] = a.GetGeneration()
	}
	if err := r.audit.fetch(ctx, c, r.rec); err != nil {
		f.Err = fmt.Sprintf("fetching the audit history: %v", err)
	}
	r.replicas.round()
	return f
}
