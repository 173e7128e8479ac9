package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/dnsplan/dnsplan/auth"
	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/enactor"
	"github.com/dnsplan/dnsplan/planner"
)

// enactorIDs are the three enactors, one per availability zone as at AWS.
var enactorIDs = []string{"az-a", "az-b", "az-c"}

// startActors starts what changes the state: a real planner over the
// sample backends, a goroutine that fails and recovers them (so the
// planner keeps storing new generations), and three enactors of the run's
// design. Each runs until ctx ends; wg waits for them.
func (r *run) startActors(ctx context.Context, wg *sync.WaitGroup, backends []sampleBackend) error {
	checks := make([]string, len(backends))
	for i, b := range backends {
		checks[i] = b.check
	}
	pc, err := r.newClient(asPlanner, r.rec.interceptor(asPlanner.Name))
	if err != nil {
		return err
	}
	p, err := planner.New(planner.Config{
		ID:        asPlanner.Name,
		Client:    pc,
		Inventory: inventory(checks),
		// Probed every 100ms and believed at once, so a backend failed or
		// recovered shows in a new plan within a few hundred milliseconds.
		Interval:     100 * time.Millisecond,
		ProbeTimeout: 200 * time.Millisecond,
		Rise:         1,
		Fall:         1,
		LeaseTTL:     r.leaseTTL,
		Logger:       r.cfg.Logger,
	})
	if err != nil {
		return err
	}
	wg.Go(func() {
		if err := p.Run(ctx); err != nil {
			r.log.Error("planner stopped", "err", err)
		}
	})
	wg.Go(func() { r.flipHealth(ctx, backends) })

	for _, id := range enactorIDs {
		a := &actor{id: id, watch: &watchStall{}}
		gate := enactor.NewPauseGate()
		// The gate's option comes first, so a frozen enactor's calls are
		// held before the recorder sees them: an operation's call time is
		// when it was sent. Each enactor's client starts at a different
		// node (newClient), which serves its plan watch until it breaks.
		//
		// Its receive window is gRPC's smallest, as for the bare watcher:
		// a stalled enactor holds only so much unread (a paused process,
		// its socket buffers); gRPC's window, grown by its bandwidth
		// estimate, would otherwise soak up megabytes in this process.
		ec, err := r.newClient(auth.Identity{Role: auth.RoleEnactor, Name: id}, gate.ClientOption(), r.rec.interceptor(id), client.WithDialOptions(a.watch.option(),
			grpc.WithInitialWindowSize(stallWindow), grpc.WithInitialConnWindowSize(stallWindow)))
		if err != nil {
			return err
		}
		cfg := enactor.Config{
			ID:              id,
			Client:          ec,
			LeaseTTL:        r.leaseTTL,
			ConvergeTimeout: 2 * time.Second,
			Pause:           gate,
			BeforeApply:     func(string, uint64) { a.pauseBeforeWrite(ctx) },
			Logger:          r.cfg.Logger,
		}
		if r.cfg.Design == contract.Legacy {
			cfg.Legacy, cfg.LegacyDelay, cfg.LegacyKeep = true, LegacyDelay, LegacyKeep
		}
		if a.e, err = enactor.New(cfg); err != nil {
			return err
		}
		r.enactors = append(r.enactors, a)
		wg.Go(func() {
			if err := a.e.Run(ctx); err != nil {
				r.log.Error("enactor stopped", "enactor", id, "err", err)
			}
		})
	}
	r.adminClient, err = r.newClient(asOperator, client.WithCallTimeout(2*time.Second), client.WithRetryBudget(5*time.Second))
	return err
}

// pauseBeforeWrite runs before each write an enactor sends: the
// SlowEnactor fault pauses there while it lasts, and a FreezeEnactor fault
// armed for the next write freezes the enactor there (it then waits at
// its gate, right after this hook, until woken).
func (a *actor) pauseBeforeWrite(ctx context.Context) {
	a.lastWrite.Store(time.Now().UnixNano())
	if d := time.Duration(a.slow.Load()); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
	if ch := a.freeze.Swap(nil); ch != nil {
		a.e.Pause()
		close(*ch)
	}
}

// flipHealth fails or recovers one backend every 150–450ms, never more
// than two at once, so that each new plan removes at most half of an
// endpoint's capacity and the velocity limit lets it through. Every few
// seconds it plays a longer episode instead (healthEpisode). Choices and
// pauses come from the run's seed.
func (r *run) flipHealth(ctx context.Context, backends []sampleBackend) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x4ea1))
	for {
		pause := 150*time.Millisecond + time.Duration(rng.Int64N(int64(300*time.Millisecond)))
		if !sleepCtx(ctx, pause) {
			return
		}
		if rng.IntN(10) == 0 {
			if !r.healthEpisode(ctx, rng, backends) {
				return
			}
			continue
		}
		var down []int
		for i, b := range backends {
			if !b.Healthy() {
				down = append(down, i)
			}
		}
		i := rng.IntN(len(backends))
		switch {
		case !backends[i].Healthy():
			backends[i].Recover()
		case len(down) < 2:
			backends[i].Fail()
		default:
			i = down[rng.IntN(len(down))]
			backends[i].Recover()
		}
		r.log.Debug("backend health flipped", "backend", backends[i].ID(), "healthy", backends[i].Healthy(), "at", fmt.Sprint(time.Duration(r.rec.now())))
	}
}

// healthEpisode plays one of two health changes that single flips never
// make, and returns false if ctx ended:
//
//   - health-burst: two backends fail at once (half of api's capacity,
//     the velocity limit exactly), then, once a plan had time to be
//     stored, a third (a quarter left: each step is within the limit
//     against the plan before it, the sum is not); then all but one
//     recover;
//   - family-outage: lb-1 and lb-2, every IPv4 target of api-dual, fail
//     together, which empties its A family unless the planner fails open
//     per family; then they recover.
//
// Each lasts about a second.
func (r *run) healthEpisode(ctx context.Context, rng *rand.Rand, backends []sampleBackend) bool {
	set := func(healthy ...bool) {
		for i, b := range backends {
			switch {
			case healthy[i] && !b.Healthy():
				b.Recover()
			case !healthy[i] && b.Healthy():
				b.Fail()
			}
		}
	}
	hold := 600*time.Millisecond + time.Duration(rng.Int64N(int64(600*time.Millisecond)))
	if rng.IntN(2) == 0 {
		order := rng.Perm(len(backends))
		up := []bool{true, true, true, true}
		set(up...)
		if !sleepCtx(ctx, 300*time.Millisecond) {
			return false
		}
		r.rec.event(Event{Kind: "health-burst", Detail: fmt.Sprintf("lb-%d and lb-%d fail, then lb-%d", order[0]+1, order[1]+1, order[2]+1)})
		up[order[0]], up[order[1]] = false, false
		set(up...)
		if !sleepCtx(ctx, 400*time.Millisecond) {
			return false
		}
		up[order[2]] = false
		set(up...)
		if !sleepCtx(ctx, hold) {
			return false
		}
		up[order[0]], up[order[1]] = true, true
		set(up...)
		return true
	}
	r.rec.event(Event{Kind: "family-outage", Detail: "lb-1 and lb-2 (every IPv4 target of api-dual) fail"})
	set(false, false, true, true)
	if !sleepCtx(ctx, hold) {
		return false
	}
	set(true, true, true, true)
	return true
}

// sleepCtx waits d, or until ctx ends (false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-time.After(d):
		return true
	}
}
