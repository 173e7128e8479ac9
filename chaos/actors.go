package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

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
	pc, err := r.newClient(r.rec.interceptor("planner"))
	if err != nil {
		return err
	}
	p, err := planner.New(planner.Config{
		ID:        "planner",
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
		a := &actor{id: id}
		gate := enactor.NewPauseGate()
		// The gate's option comes first, so a frozen enactor's calls are
		// held before the recorder sees them: an operation's call time is
		// when it was sent.
		ec, err := r.newClient(gate.ClientOption(), r.rec.interceptor(id))
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
		if r.cfg.Design == Legacy {
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
	return nil
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
// endpoint's capacity and the velocity limit lets it through. Choices and
// pauses come from the run's seed.
func (r *run) flipHealth(ctx context.Context, backends []sampleBackend) {
	rng := rand.New(rand.NewPCG(r.cfg.Seed, 0x4ea1))
	for {
		pause := 150*time.Millisecond + time.Duration(rng.Int64N(int64(300*time.Millisecond)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
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
