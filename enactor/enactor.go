// Package enactor makes the cluster's nodes serve the newest DNS plan. An
// enactor stands by for a fenced lease per shard (enactor/<shard>); while it
// holds one it watches plans, applies the newest with its lease token, reads
// every node back until each serves the plan, and cleans old plans up.
//
// Enactors are untrusted for safety (docs/DESIGN.md, section 2). The one thing
// that keeps an old plan off an endpoint is the cluster's conditional
// apply: inside the state machine, in the same step as the write, the
// token must be the lease's current one and the generation newer than the
// endpoint's. An enactor here keeps no freshness check of its own that
// safety depends on, so a slow, paused, buggy or duplicated enactor wastes
// work at worst; that is what AWS's enactors lacked in October 2025.
//
// Answers per endpoint: APPLIED, and STALE at exactly the generation
// asked for (the retry of a write whose first answer was lost), both mean
// the endpoint serves the plan, which is then read back; STALE at a newer
// generation means the apply changed nothing; REFUSED (the velocity limit,
// emptying an address family) is logged and counted by reason, and the
// refused endpoints are applied again alone after a pause, since the
// velocity window slides. A holder also reads the newest plan every lease
// TTL, so a watch stream that went quiet (its node cut off from the
// quorum) delays a plan by one TTL at most.
//
// The package talks to the cluster only through the small interfaces
// below, which *client.Client implements; it never imports cluster/.
package enactor

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"maps"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// LeaseHolder runs work while holding a fenced lease, renewing it, and
// ends the work's context the moment the lease may be lost.
type LeaseHolder interface {
	HoldLease(ctx context.Context, name, holder string, ttl time.Duration, fn func(context.Context, *pb.Lease)) error
}

// PlanWatcher streams stored plans in generation order, then new ones.
type PlanWatcher interface {
	WatchPlans(ctx context.Context, from uint64, fn func(*pb.Plan) error) error
}

// PlanReader reads the newest stored plan linearizably: the enactor's
// check, independent of any watch stream, that it has missed no plan.
type PlanReader interface {
	GetPlan(ctx context.Context, req *pb.GetPlanRequest) (*pb.Plan, error)
}

// Applier is the cluster's conditional write, its plan clean-up, and the
// report of what an enactor doubts.
type Applier interface {
	ApplyPlan(ctx context.Context, req *pb.ApplyPlanRequest) (*pb.ApplyPlanResponse, error)
	CleanupPlans(ctx context.Context, req *pb.CleanupPlansRequest) (*pb.CleanupPlansResponse, error)
	ReportDoubt(ctx context.Context, req *pb.ReportDoubtRequest) (*pb.ReportDoubtResponse, error)
}

// Reader finds the cluster's members, reads back what one node serves,
// and reads what every endpoint serves (a staged rollout's start).
type Reader interface {
	Status(ctx context.Context) (*pb.StatusResponse, error)
	GetAppliedOf(ctx context.Context, addr, endpoint string) (*pb.AppliedEndpoint, error)
	AllApplied(ctx context.Context, stale bool) ([]*pb.AppliedEndpoint, error)
}

// The client is what the enactor uses in production.
var (
	_ LeaseHolder = (*client.Client)(nil)
	_ PlanWatcher = (*client.Client)(nil)
	_ PlanReader  = (*client.Client)(nil)
	_ Applier     = (*client.Client)(nil)
	_ Reader      = (*client.Client)(nil)
)

// Defaults for Config's zero values.
const (
	DefaultLeaseTTL        = 3 * time.Second
	DefaultShards          = 1
	DefaultKeepLast        = 10
	DefaultConvergeTimeout = 10 * time.Second
	DefaultLegacyKeep      = 5
)

// Config is what an enactor needs. Zero values take the defaults above.
type Config struct {
	// ID names this enactor in leases, applies and the audit history
	// (e.g. az-a). Required.
	ID string
	// Client reaches the cluster. Required.
	Client *client.Client
	// LeaseTTL is the TTL of each enactor/<shard> lease; it is renewed
	// every LeaseTTL/3. While holding a lease the enactor also reads the
	// newest plan every LeaseTTL, whatever its watch stream does.
	LeaseTTL time.Duration
	// Shards is how many leases the endpoints are split over: endpoint e
	// belongs to shard ShardOf(e, Shards). With one shard every apply
	// covers every endpoint of the plan.
	Shards int
	// KeepLast is the clean-up's keep_last: the newest KeepLast plans
	// survive, as does every applied one (the cluster sees to that).
	KeepLast int
	// ConvergeTimeout bounds the read-back after an apply; running out is
	// a warning and a counter, not an error.
	ConvergeTimeout time.Duration
	// Waves, if set, applies each plan as a staged rollout (rollout.go):
	// wave by wave over the endpoints it changes, each wave but the last
	// read back on every node and baked for Bake before the next.
	Waves []Wave
	// Bake is how long a staged rollout waits after a wave was read back
	// before it checks the wave and goes on.
	Bake time.Duration

	// Logger defaults to discarding; the enactor adds component=enactor.
	Logger *slog.Logger
	// Registerer receives the enactor's metrics; nil gives them a private
	// registry (so several enactors can share a process, as in tests).
	Registerer prometheus.Registerer

	// Pause is the gate Pause and Resume close and open. Nil gives the
	// enactor a gate of its own that holds only its own steps; a client
	// built with Pause.ClientOption() also has its lease renewals held,
	// which is what freezing a whole process needs (see PauseGate).
	Pause *PauseGate
	// BeforeApply, if set, is called just before each apply is sent,
	// after the enactor decided to send it. Tests use it to pause an
	// enactor at exactly that step, the AWS "delayed enactor". The legacy
	// enactor calls it before each endpoint's write, with no lease ("").
	BeforeApply func(lease string, generation uint64)

	// Legacy runs the old, unsafe enactor instead (legacy.go): no lease,
	// a freshness check once at the start, then LegacyApply endpoint by
	// endpoint and an age-based clean-up. A demonstration of the AWS
	// failure, for clusters started with --legacy; never for real use.
	Legacy bool
	// LegacyDelay is the pause between two endpoint writes of a legacy
	// pass: the window in which the old design's check goes stale.
	LegacyDelay time.Duration
	// LegacyKeep is the legacy clean-up's keep_generations: plans more
	// than this many generations older than the newest are deleted,
	// applied or not (default DefaultLegacyKeep).
	LegacyKeep uint32
}

func (c *Config) setDefaults() error {
	if c.ID == "" {
		return errors.New("enactor: an id is required")
	}
	if c.Client == nil {
		return errors.New("enactor: a cluster client is required")
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Shards == 0 {
		c.Shards = DefaultShards
	}
	if c.KeepLast == 0 {
		c.KeepLast = DefaultKeepLast
	}
	if c.ConvergeTimeout == 0 {
		c.ConvergeTimeout = DefaultConvergeTimeout
	}
	if c.LegacyKeep == 0 {
		c.LegacyKeep = DefaultLegacyKeep
	}
	switch {
	case c.LeaseTTL < 0:
		return fmt.Errorf("enactor: lease ttl %s is negative", c.LeaseTTL)
	case c.Shards < 1:
		return fmt.Errorf("enactor: shards %d must be at least 1", c.Shards)
	case c.KeepLast < 1 || uint64(c.KeepLast) > math.MaxUint32:
		return fmt.Errorf("enactor: keep-last %d outside 1..%d", c.KeepLast, uint32(math.MaxUint32))
	case c.ConvergeTimeout < 0:
		return fmt.Errorf("enactor: converge timeout %s is negative", c.ConvergeTimeout)
	case c.LegacyDelay < 0:
		return fmt.Errorf("enactor: legacy delay %s is negative", c.LegacyDelay)
	case c.Bake < 0:
		return fmt.Errorf("enactor: bake %s is negative", c.Bake)
	case len(c.Waves) > 0 && c.Legacy:
		return errors.New("enactor: the legacy enactor has no staged rollout")
	case len(c.Waves) > 0 && c.Waves[len(c.Waves)-1].Percent != 100:
		return errors.New("enactor: a staged rollout's last wave is 100%")
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.Pause == nil {
		c.Pause = NewPauseGate()
	}
	return nil
}

// Enactor applies plans while it holds leases. Create one with New and
// start it with Run.
type Enactor struct {
	cfg        Config
	log        *slog.Logger
	leases     LeaseHolder
	plans      PlanWatcher
	planReader PlanReader
	applier    Applier
	reader     Reader
	gate       *PauseGate
	metrics    *metrics
	// legacy is set only when cfg.Legacy is (legacy.go).
	legacy *legacyEnactor

	running atomic.Bool

	// heldMu guards held, the leases held now (name → token), which
	// /healthz and Leases report; shard goroutines write it.
	heldMu sync.Mutex
	held   map[string]uint64
}

// New checks cfg and registers the enactor's metrics.
func New(cfg Config) (*Enactor, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(cfg.Registerer, cfg.Shards)
	if err != nil {
		return nil, err
	}
	var legacy *legacyEnactor
	if cfg.Legacy {
		if legacy, err = newLegacyEnactor(cfg); err != nil {
			return nil, err
		}
	}
	return &Enactor{
		cfg:        cfg,
		log:        cfg.Logger.With("component", "enactor", "enactor", cfg.ID),
		leases:     cfg.Client,
		plans:      cfg.Client,
		planReader: cfg.Client,
		applier:    cfg.Client,
		reader:     cfg.Client,
		gate:       cfg.Pause,
		metrics:    m,
		legacy:     legacy,
		held:       map[string]uint64{},
	}, nil
}

// Run stands by for every shard's lease and enacts plans while holding
// one. It blocks until ctx ends, then releases what it holds and returns
// nil. An enactor runs once at a time.
func (e *Enactor) Run(ctx context.Context) error {
	if !e.running.CompareAndSwap(false, true) {
		return errors.New("enactor: already running")
	}
	defer e.running.Store(false)
	if e.legacy != nil {
		return e.runLegacy(ctx)
	}
	e.log.Info("enactor running", "shards", e.cfg.Shards, "lease_ttl", e.cfg.LeaseTTL,
		"keep_last", e.cfg.KeepLast, "converge_timeout", e.cfg.ConvergeTimeout)
	var wg sync.WaitGroup
	for i := range e.cfg.Shards {
		// One goroutine per shard: shards are independent leases, so this
		// enactor may hold some while other enactors hold the rest, and a
		// shard it is fenced on does not stop the others.
		wg.Go(func() { newShard(e, i).run(ctx) })
	}
	wg.Wait()
	e.log.Info("enactor stopped")
	return nil
}

// Pause holds every goroutine of the enactor at its next step, as if its
// process were frozen (docker pause, SIGSTOP, a long GC pause): nothing is
// sent, no lease is released, renewals stop if the client carries the
// gate's ClientOption. Resume lets each send what it was about to send,
// with the token it had. It exists to show that the cluster fences what
// such an enactor sends late.
func (e *Enactor) Pause() { e.gate.Pause() }

// Resume undoes Pause.
func (e *Enactor) Resume() { e.gate.Resume() }

// Leases returns the leases held now, by name, with their tokens.
func (e *Enactor) Leases() map[string]uint64 {
	e.heldMu.Lock()
	defer e.heldMu.Unlock()
	return maps.Clone(e.held)
}

func (e *Enactor) setHeld(lease string, token uint64) {
	e.heldMu.Lock()
	defer e.heldMu.Unlock()
	if token == 0 {
		delete(e.held, lease)
		e.metrics.leasesHeld.WithLabelValues(lease).Set(0)
		return
	}
	e.held[lease] = token
	e.metrics.leasesHeld.WithLabelValues(lease).Set(1)
}

// LeaseName is the name of a shard's lease.
func LeaseName(shard int) string { return fmt.Sprintf("%s%d", contract.EnactorLeasePrefix, shard) }

// ShardOf is the shard an endpoint belongs to: FNV-1a of its name, modulo
// shards. Plans hold canonical (lower-case) names, so every enactor
// computes the same shard for an endpoint.
func ShardOf(endpoint string, shards int) int {
	if shards <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(endpoint))
	return int(h.Sum32() % uint32(shards))
}
