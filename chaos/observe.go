package chaos

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/fsm"
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
//     1,000 events) loses nothing, and merged by index, for I4 and I5.
func (r *run) startObservers(ctx context.Context, wg *sync.WaitGroup) (*probe.Prober, error) {
	for _, ep := range endpoints {
		c, err := r.newClient(client.WithCallTimeout(time.Second), client.WithRetryBudget(3*time.Second))
		if err != nil {
			return nil, err
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
	for i, id := range r.cluster.ids {
		nodes = append(nodes, probe.Node{Name: id, DNS: r.cluster.dns[i]})
	}
	prober, err := probe.New(probe.Config{
		Nodes:     nodes,
		Endpoints: endpoints,
		Interval:  probeInterval,
		Timeout:   300 * time.Millisecond,
		Logger:    r.cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	wg.Go(func() { _ = prober.Run(ctx) })
	wg.Go(func() { r.forwardProbe(ctx, prober) })

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

	ac, err := r.newClient(client.WithCallTimeout(time.Second), client.WithRetryBudget(2*time.Second))
	if err != nil {
		return nil, err
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
	return prober, nil
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
}

func newReplicaCheck(r *run) *replicaCheck { return &replicaCheck{r: r, reported: map[string]bool{}} }

func (c *replicaCheck) round() {
	for i, id := range c.r.cluster.ids {
		n := c.r.cluster.node(i)
		if n == nil {
			continue
		}
		type breach struct {
			key string // what makes a lasting breach one breach
			v   Violation
		}
		var found []breach
		n.State(func(s *fsm.State) {
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
	plans, err := c.ListPlans(ctx, &pb.ListPlansRequest{})
	if err != nil {
		f.Err = fmt.Sprintf("listing plans: %v", err)
		return f
	}
	for _, p := range plans.GetPlans() {
		f.Plans[p.GetGeneration()] = true
	}
	applied, err := c.ListApplied(ctx, &pb.ListAppliedRequest{})
	if err != nil {
		f.Err = fmt.Sprintf("listing applied endpoints: %v", err)
		return f
	}
	for _, a := range applied.GetEndpoints() {
		f.Applied[a.GetEndpoint()] = a.GetGeneration()
	}
	if err := r.audit.fetch(ctx, c, r.rec); err != nil {
		f.Err = fmt.Sprintf("fetching the audit history: %v", err)
	}
	r.replicas.round()
	return f
}
