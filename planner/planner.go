// Package planner turns load-balancer health and capacity into DNS plans
// (docs/DESIGN.md, sections 4 and 6). A planner reads an inventory (endpoints
// and their targets), probes every target's health check, and builds a
// plan: each target weighted by its capacity while healthy and 0 while not,
// an endpoint whose every target is down failing open. It stores the plan
// with SubmitPlan when its records differ from the newest stored plan.
//
// Several planners may run; only the holder of the fenced "planner" lease
// submits, the others probe and stand by, so a takeover acts on fresh
// health at once. The planner never forces a plan: when the cluster's
// velocity limit refuses an endpoint's change (too much capacity removed
// at once), it holds that endpoint at its stored records, stores the
// other endpoints' changes, and tries again next interval, leaving the
// override to an operator.
// That limit is the protection AWS added after October 2025; a planner
// that forced its way past it would make it worthless.
//
// The package talks to the cluster only through the Cluster interface,
// which *client.Client implements; it never imports package cluster.
package planner

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// LeaseName is the lease whose holder is the one planner that submits.
const LeaseName = contract.PlannerLease

// Cluster is what the planner needs from the cluster: the newest plan, a
// way to store a new one, and the planner lease.
type Cluster interface {
	GetPlan(ctx context.Context, req *pb.GetPlanRequest) (*pb.Plan, error)
	SubmitPlan(ctx context.Context, req *pb.SubmitPlanRequest) (*pb.SubmitPlanResponse, error)
	HoldLease(ctx context.Context, name, holder string, ttl time.Duration, fn func(context.Context, *pb.Lease)) error
}

// The client is what the planner uses in production.
var _ Cluster = (*client.Client)(nil)

// Defaults for Config's zero values.
const (
	DefaultInterval     = time.Second
	DefaultProbeTimeout = time.Second
	DefaultRise         = 2
	DefaultFall         = 2
	DefaultLeaseTTL     = 3 * time.Second
)

// Config is what a planner needs. Zero values take the defaults above.
type Config struct {
	// ID names this planner in the lease and in the plans it stores.
	// Required.
	ID string
	// Client reaches the cluster (a *client.Client). Required.
	Client Cluster
	// InventoryPath is the inventory file. It is loaded by New and
	// watched: a change (seen by polling each Interval, or on Reload) is
	// loaded if valid and refused if not. Exactly one of InventoryPath and
	// Inventory is required.
	InventoryPath string
	// Inventory is a fixed inventory, for callers that build it in code.
	Inventory *Inventory
	// Interval is how often targets are probed, the file polled and the
	// plan reconsidered.
	Interval time.Duration
	// ProbeTimeout bounds one health check.
	ProbeTimeout time.Duration
	// Rise and Fall are how many consecutive successes turn an unhealthy
	// target healthy, and failures a healthy one unhealthy.
	Rise, Fall int
	// LeaseTTL is the planner lease's TTL; it is renewed every third of it.
	LeaseTTL time.Duration
	// Logger defaults to discarding; the planner adds component=planner.
	Logger *slog.Logger
	// Registerer receives the planner's metrics; nil gives them a private
	// registry (so several planners can share a process, as in tests).
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() error {
	if c.ID == "" || len(c.ID) > contract.MaxIDLength {
		return fmt.Errorf("planner: id must be 1..%d bytes", contract.MaxIDLength)
	}
	if c.Client == nil {
		return errors.New("planner: a cluster client is required")
	}
	if (c.InventoryPath == "") == (c.Inventory == nil) {
		return errors.New("planner: exactly one of an inventory file and an inventory is required")
	}
	if c.Interval == 0 {
		c.Interval = DefaultInterval
	}
	if c.ProbeTimeout == 0 {
		c.ProbeTimeout = DefaultProbeTimeout
	}
	if c.Rise == 0 {
		c.Rise = DefaultRise
	}
	if c.Fall == 0 {
		c.Fall = DefaultFall
	}
	if c.LeaseTTL == 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	switch {
	case c.Interval < 0:
		return fmt.Errorf("planner: interval %s is negative", c.Interval)
	case c.ProbeTimeout < 0:
		return fmt.Errorf("planner: probe timeout %s is negative", c.ProbeTimeout)
	case c.Rise < 1:
		return fmt.Errorf("planner: rise %d must be at least 1", c.Rise)
	case c.Fall < 1:
		return fmt.Errorf("planner: fall %d must be at least 1", c.Fall)
	case c.LeaseTTL < contract.MinLeaseTTL || c.LeaseTTL > contract.MaxLeaseTTL:
		return fmt.Errorf("planner: lease ttl %s outside %s..%s", c.LeaseTTL, contract.MinLeaseTTL, contract.MaxLeaseTTL)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	return nil
}

// Planner probes targets and, while it holds the planner lease, stores
// plans. Create one with New and start it with Run.
type Planner struct {
	cfg     Config
	log     *slog.Logger
	cluster Cluster
	prober  *prober
	metrics *metrics

	running atomic.Bool
	leading atomic.Bool

	// kick asks the probe loop for a round now (after a reload brought
	// targets without a result); wake tells the planning loop that the
	// desired plan may have changed. Each holds at most one signal: a
	// second one before the first is taken adds nothing.
	kick, wake chan struct{}

	// reloadMu serializes reloads (Reload from a signal, and the poll)
	// and guards the fields below, which remember the file as last read.
	reloadMu sync.Mutex
	seenSum  [sha256.Size]byte // content last parsed, valid or not
	seenBad  error             // why that content was refused, nil if it loaded
	seenErr  string            // the last read error, so a poll logs it once

	// mu guards the inventory, the targets' health and the desired plan:
	// the probe loop writes health, reloads replace the inventory, the
	// planning loop and HTTP handlers read.
	mu       sync.Mutex
	inv      *Inventory
	health   map[string]*targetHealth // by target id
	desired  built
	failOpen map[string]bool // endpoints failing open, to log changes once

	// wholeUntil, written and read by the planning loop only, is when to
	// try deltas again after the cluster refused one (submit).
	wholeUntil time.Time
}

// New checks cfg, loads the inventory (an invalid one is an error) and
// registers the planner's metrics.
func New(cfg Config) (*Planner, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	var inv *Inventory
	var sum [sha256.Size]byte
	if cfg.InventoryPath != "" {
		data, err := readInventoryFile(cfg.InventoryPath)
		if err != nil {
			return nil, err
		}
		if inv, err = ParseInventory(data); err != nil {
			return nil, fmt.Errorf("inventory %s: %w", cfg.InventoryPath, err)
		}
		sum = sha256.Sum256(data)
	} else {
		var err error
		if inv, err = cfg.Inventory.Validate(); err != nil {
			return nil, fmt.Errorf("inventory: %w", err)
		}
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	p := &Planner{
		cfg:      cfg,
		log:      cfg.Logger.With("component", "planner", "planner", cfg.ID),
		cluster:  cfg.Client,
		prober:   newProber(cfg.ProbeTimeout),
		metrics:  m,
		kick:     make(chan struct{}, 1),
		wake:     make(chan struct{}, 1),
		seenSum:  sum,
		health:   map[string]*targetHealth{},
		failOpen: map[string]bool{},
	}
	p.setInventory(inv, false)
	return p, nil
}

// Run probes targets every interval and stands by for the planner lease;
// while it holds the lease it stores a new plan whenever the records it
// computes differ from the newest stored plan. It blocks until ctx ends,
// then releases the lease and returns nil. A planner runs once at a time.
func (p *Planner) Run(ctx context.Context) error {
	if !p.running.CompareAndSwap(false, true) {
		return errors.New("planner: already running")
	}
	defer p.running.Store(false)
	p.log.Info("planner running", "interval", p.cfg.Interval, "probe_timeout", p.cfg.ProbeTimeout,
		"rise", p.cfg.Rise, "fall", p.cfg.Fall, "lease_ttl", p.cfg.LeaseTTL, "inventory", p.cfg.InventoryPath)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	// The probe loop runs whether or not this planner holds the lease,
	// so a standby that takes over plans on fresh health at once.
	wg.Go(func() { p.probeLoop(ctx) })
	err := p.cluster.HoldLease(ctx, LeaseName, p.cfg.ID, p.cfg.LeaseTTL, p.lead)
	cancel()
	wg.Wait()
	p.log.Info("planner stopped")
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return nil
	}
	return err
}

// signal leaves a signal on ch unless one is already waiting.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// probeLoop polls the inventory file and runs a probe round each
// interval, at once on start and after a reload asks for it.
func (p *Planner) probeLoop(ctx context.Context) {
	tick := time.NewTicker(p.cfg.Interval)
	defer tick.Stop()
	for {
		if p.cfg.InventoryPath != "" {
			_ = p.reload(false) // logged and counted inside
		}
		// This round covers whatever the poll just loaded.
		select {
		case <-p.kick:
		default:
		}
		p.probeRound(ctx)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-p.kick:
		}
	}
}

// probeRound runs every distinct check once, at most maxConcurrentProbes
// at a time, each within the probe timeout; then it recomputes the desired
// plan and wakes the planning loop. Targets that share a check (one
// upstream behind several addresses) share its result, so they change
// state in the same round rather than one probe apart.
func (p *Planner) probeRound(ctx context.Context) {
	p.mu.Lock()
	jobs := map[string][]string{} // check -> target ids
	for id, h := range p.health {
		if h.check != "" {
			jobs[h.check] = append(jobs[h.check], id)
		}
	}
	p.mu.Unlock()
	sem := make(chan struct{}, maxConcurrentProbes)
	var wg sync.WaitGroup
	defer wg.Wait()
	for _, chk := range slices.Sorted(maps.Keys(jobs)) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		// One goroutine per probe, so one slow target costs the round
		// its timeout once rather than once per target queued behind it.
		wg.Go(func() {
			defer func() { <-sem }()
			c, _ := parseCheck(chk) // validated at load
			err := p.prober.probe(ctx, c)
			if ctx.Err() != nil {
				return // stopping: a cancelled probe says nothing of the target
			}
			p.record(chk, jobs[chk], err)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return
	}
	p.mu.Lock()
	p.refresh()
	p.mu.Unlock()
	signal(p.wake)
}

// record applies one probe result to the health of the targets checked by
// chk.
func (p *Planner) record(chk string, ids []string, err error) {
	result := "success"
	if err != nil {
		result = "failure"
		p.log.Debug("probe failed", "check", chk, "targets", ids, "err", err)
	}
	p.metrics.probes.WithLabelValues(result).Inc()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, id := range ids {
		h := p.health[id]
		if h == nil || h.check != chk {
			continue // the inventory changed during the probe
		}
		first := !h.known
		if !h.observe(err, p.cfg.Rise, p.cfg.Fall) {
			continue
		}
		p.metrics.targetHealthy.WithLabelValues(id).Set(boolGauge(h.healthy))
		switch {
		case first && err == nil:
			p.log.Info("target probed", "target", id, "healthy", true, "check", chk)
		case first:
			p.log.Warn("target probed", "target", id, "healthy", false, "check", chk, "err", err)
		case h.healthy:
			p.log.Info("target healthy", "target", id, "check", chk, "rise", p.cfg.Rise)
		default:
			p.log.Warn("target unhealthy", "target", id, "check", chk, "fall", p.cfg.Fall, "err", err)
		}
	}
}

func boolGauge(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// refresh recomputes the desired plan from the inventory and health, and
// the gauges that follow from them. p.mu must be held.
func (p *Planner) refresh() {
	b := buildPlan(p.cfg.ID, p.inv, func(id string) (bool, bool) {
		h := p.health[id]
		if h == nil {
			return false, false
		}
		return h.healthy, h.known
	})
	p.desired = b
	healthy := 0
	for _, h := range p.health {
		if h.known && h.healthy {
			healthy++
		}
	}
	p.metrics.targetsHealthy.Set(float64(healthy))
	p.metrics.targets.Set(float64(len(p.health)))
	if !b.ready {
		// Without every result, fail-open is not known either; keep
		// what was last said rather than flapping it.
		return
	}
	for _, ep := range p.inv.Endpoints {
		now, was := b.failOpen[ep.Name], p.failOpen[ep.Name]
		p.metrics.failOpen.WithLabelValues(ep.Name).Set(boolGauge(now))
		switch {
		case now && !was:
			p.log.Warn("every target of an address family of the endpoint is unhealthy; failing open with that family's targets at their capacity",
				"endpoint", ep.Name, "targets", len(ep.Targets))
		case was && !now:
			p.log.Info("every address family of the endpoint has a healthy target again; no longer failing open", "endpoint", ep.Name)
		}
	}
	p.failOpen = maps.Clone(b.failOpen)
}

// setInventory makes inv the inventory in use. Targets whose id and check
// are unchanged keep their health, so a reload does not reset what the
// probes learned; new ones wait for their first probe, asked for at once.
func (p *Planner) setInventory(inv *Inventory, reloaded bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if reloaded && reflect.DeepEqual(p.inv, inv) {
		p.log.Info("inventory unchanged", "inventory", p.cfg.InventoryPath)
		return
	}
	health := map[string]*targetHealth{}
	var added, removed []string
	for id, chk := range inv.targetIDs() {
		if h, ok := p.health[id]; ok && h.check == chk {
			health[id] = h
			continue
		}
		h := &targetHealth{check: chk}
		if chk == "" {
			h.known, h.healthy = true, true // no check: always healthy
			p.metrics.targetHealthy.WithLabelValues(id).Set(1)
		} else {
			p.metrics.targetHealthy.WithLabelValues(id).Set(0)
		}
		health[id] = h
		added = append(added, id)
	}
	for id := range p.health {
		if _, ok := health[id]; !ok {
			p.metrics.targetHealthy.DeleteLabelValues(id)
			removed = append(removed, id)
		}
	}
	endpoints := map[string]bool{}
	for _, ep := range inv.Endpoints {
		endpoints[ep.Name] = true
	}
	for name := range p.failOpen {
		if !endpoints[name] {
			delete(p.failOpen, name)
		}
	}
	if p.inv != nil {
		for _, ep := range p.inv.Endpoints {
			if !endpoints[ep.Name] {
				p.metrics.failOpen.DeleteLabelValues(ep.Name)
			}
		}
	}
	p.inv, p.health = inv, health
	p.refresh()
	p.metrics.inventoryLoaded.SetToCurrentTime()
	if reloaded {
		p.metrics.reloads.Inc()
		slices.Sort(added)
		slices.Sort(removed)
		p.log.Info("inventory reloaded", "inventory", p.cfg.InventoryPath, "endpoints", len(inv.Endpoints),
			"targets", len(health), "new_or_changed_targets", added, "removed_targets", removed)
	}
	signal(p.kick)
	signal(p.wake)
}

// Reload reads the inventory file again. A valid inventory replaces the
// one in use; an invalid or unreadable one is refused (logged, counted in
// dnsplan_planner_inventory_reload_errors_total, returned) and the last
// good inventory stays. The file is also polled every interval, so Reload
// (on SIGHUP) only makes a change take effect sooner.
func (p *Planner) Reload() error {
	if p.cfg.InventoryPath == "" {
		return errors.New("planner: the inventory was not loaded from a file; nothing to reload")
	}
	return p.reload(true)
}

// reload reads the file and loads it if it changed. A poll (explicit
// false) acts only on content it has not seen, so a bad file is logged and
// counted once, not every interval.
func (p *Planner) reload(explicit bool) error {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	path := p.cfg.InventoryPath
	data, err := readInventoryFile(path)
	if err != nil {
		if explicit || err.Error() != p.seenErr {
			p.metrics.reloadErrors.Inc()
			p.log.Error("cannot read the inventory; keeping the last good one", "err", err)
		}
		p.seenErr = err.Error()
		return err
	}
	p.seenErr = ""
	sum := sha256.Sum256(data)
	if sum == p.seenSum && !explicit {
		return p.seenBad
	}
	p.seenSum = sum
	inv, err := ParseInventory(data)
	if err != nil {
		p.seenBad = fmt.Errorf("inventory %s: %w", path, err)
		p.metrics.reloadErrors.Inc()
		p.log.Error("inventory refused; keeping the last good one", "err", p.seenBad)
		return p.seenBad
	}
	p.seenBad = nil
	p.setInventory(inv, true)
	return nil
}

// lead runs while this planner holds the planner lease: it plans at once
// (a takeover acts on the health the standby already knows), then after
// every probe round or reload, until the lease may be lost.
func (p *Planner) lead(ctx context.Context, lease *pb.Lease) {
	p.leading.Store(true)
	p.metrics.leaseHeld.Set(1)
	defer func() {
		p.leading.Store(false)
		p.metrics.leaseHeld.Set(0)
	}()
	log := p.log.With("token", lease.GetToken())
	log.Info("holding the planner lease; planning")
	var refused string // the last round's refusals, to warn once per refusal
	for {
		if fenced := p.planOnce(ctx, log, lease, &refused); fenced {
			// The cluster refused our token: another planner holds the
			// lease. Stop now rather than at the next renewal.
			log.Warn("planner lease lost (plan fenced); standing by")
			return
		}
		select {
		case <-ctx.Done():
			log.Info("planner lease released or lost; standing by")
			return
		case <-p.wake:
		}
	}
}

// planOnce stores the desired plan if its records differ from the newest
// stored plan's, fenced by the planner lease. A refusal is logged and
// counted and left for the next round: never forced. When the cluster
// names the endpoint that caused a velocity or family refusal, that
// endpoint is held at its stored records and the rest of the plan is
// submitted again, so that one endpoint over the limit does not stop every
// other endpoint's updates; the held endpoint's change is tried again
// next round, as the velocity window slides. It reports whether the
// cluster fenced the submission (the lease is lost).
func (p *Planner) planOnce(ctx context.Context, log *slog.Logger, lease *pb.Lease, refused *string) (fenced bool) {
	p.mu.Lock()
	b := p.desired
	p.mu.Unlock()
	if !b.ready {
		log.Debug("waiting for a probe result from every target before planning")
		return false
	}
	newest, err := p.cluster.GetPlan(ctx, &pb.GetPlanRequest{Newest: true})
	switch {
	case status.Code(err) == codes.NotFound:
		newest = nil // no plan stored yet
	case err != nil:
		if ctx.Err() == nil {
			log.Warn("cannot read the newest plan; retrying next interval", "err", err)
		}
		return false
	}
	plan := b.plan
	var held []string // endpoints held at their stored records this round
	// The refusals of this round, each warned about unless the last
	// round had it too (then it is a debug line).
	last, this := *refused, ""
	defer func() {
		p.metrics.held.Set(float64(len(held)))
		*refused = this
	}()
	for {
		if sameRecords(newest, plan) {
			if len(held) == 0 {
				p.metrics.unchanged.Inc()
			}
			return false
		}
		resp, err := p.submit(ctx, log, newest, plan, lease)
		if err == nil {
			p.metrics.submitted.Inc()
			p.metrics.generation.Set(float64(resp.GetGeneration()))
			log.Info("plan stored", "generation", resp.GetGeneration(), "changed_endpoints", changedEndpoints(newest, plan),
				"after_generation", newest.GetGeneration(), "held_endpoints", held)
			return false
		}
		if ctx.Err() != nil {
			return false
		}
		reason := refusedError
		switch client.Reason(err) {
		case contract.ReasonFenced:
			p.metrics.refused.WithLabelValues(refusedFenced).Inc()
			return true
		case contract.ReasonVelocity:
			reason = refusedVelocity
		case contract.ReasonFamily:
			reason = refusedFamily
		case contract.ReasonInvalid:
			reason = refusedInvalid
		case contract.ReasonParentMoved:
			p.metrics.refused.WithLabelValues(refusedParentMoved).Inc()
			log.Info("a plan was stored since the newest this round read; planning again next interval", "err", err)
			return false
		}
		p.metrics.refused.WithLabelValues(reason).Inc()
		ep := client.RejectedEndpoint(err)
		canHold := (reason == refusedVelocity || reason == refusedFamily) && ep != "" && !slices.Contains(held, ep)
		key := reason + "\x00" + ep + "\x00" + planKey(b.plan) + "\x01"
		this += key
		level := slog.LevelWarn
		if strings.Contains(last, key) {
			level = slog.LevelDebug
		}
		if canHold {
			log.Log(ctx, level, "endpoint's change refused; holding it at its stored records and submitting the other endpoints' changes (never forced; retried next interval, an operator may force it)",
				"endpoint", ep, "reason", reason, "err", err)
			held = append(held, ep)
			plan = holdEndpoint(plan, newest, ep)
			continue
		}
		msg := "plan not stored; retrying next interval"
		switch reason {
		case refusedVelocity:
			msg = "plan refused by the velocity limit; not forcing it, retrying next interval (an operator may submit it with force)"
		case refusedFamily:
			msg = "plan refused: it would empty an address family an endpoint serves; not forcing it, retrying next interval (an operator may submit it with force)"
		}
		log.Log(ctx, level, msg, "reason", reason, "changed_endpoints", changedEndpoints(newest, plan), "held_endpoints", held, "err", err)
		return false
	}
}

// deltaRetry is how long a planner whose cluster refused a delta (its log
// version does not take them yet, during an upgrade) submits whole plans
// before it tries a delta again.
const deltaRetry = time.Minute

// submit stores plan, fenced by the lease: as a delta against newest (the
// endpoints whose records changed, and those removed), so that the log
// carries what changed rather than every endpoint; or whole, when nothing
// is stored yet or the cluster does not take deltas yet.
func (p *Planner) submit(ctx context.Context, log *slog.Logger, newest, plan *pb.Plan, lease *pb.Lease) (*pb.SubmitPlanResponse, error) {
	whole := &pb.SubmitPlanRequest{Plan: plan, LeaseName: LeaseName, LeaseToken: lease.GetToken()}
	if newest == nil || time.Now().Before(p.wholeUntil) {
		return p.cluster.SubmitPlan(ctx, whole)
	}
	resp, err := p.cluster.SubmitPlan(ctx, &pb.SubmitPlanRequest{
		Plan: &pb.Plan{PlannerId: plan.GetPlannerId()}, Delta: planDelta(newest, plan), ExpectedParent: proto.Uint64(newest.GetGeneration()),
		LeaseName: LeaseName, LeaseToken: lease.GetToken(),
	})
	switch {
	case status.Code(err) == codes.FailedPrecondition && client.Reason(err) == "":
		// Refused before the log, with no reason: a cluster whose members
		// do not all take deltas yet.
	case status.Code(err) == codes.InvalidArgument:
		// A leader that does not know deltas sees a plan with no
		// endpoints; and should a delta be refused for another reason,
		// the whole plan is judged on its own.
	default:
		return resp, err
	}
	log.Info("the cluster did not take a delta; submitting whole plans", "for", deltaRetry, "err", err)
	p.wholeUntil = time.Now().Add(deltaRetry)
	return p.cluster.SubmitPlan(ctx, whole)
}

// planDelta is the change from stored to desired: desired's endpoints
// whose records (TTL, targets, minimum healthy) differ from stored's or
// that stored does not hold, and the names of stored's endpoints desired
// does not hold.
func planDelta(stored, desired *pb.Plan) *pb.PlanDelta {
	old := make(map[string]*pb.EndpointPlan, len(stored.GetEndpoints()))
	for _, ep := range stored.GetEndpoints() {
		old[contract.CanonicalName(ep.GetName())] = ep
	}
	changed := &pb.PlanDelta{}
	held := make(map[string]bool, len(desired.GetEndpoints()))
	for _, ep := range desired.GetEndpoints() {
		name := contract.CanonicalName(ep.GetName())
		held[name] = true
		o := old[name]
		if o == nil || o.GetMinHealthyTargets() != ep.GetMinHealthyTargets() || o.GetMinHealthyFraction() != ep.GetMinHealthyFraction() ||
			!sameRecords(&pb.Plan{Endpoints: []*pb.EndpointPlan{o}}, &pb.Plan{Endpoints: []*pb.EndpointPlan{ep}}) {
			changed.Endpoints = append(changed.Endpoints, ep)
		}
	}
	for _, ep := range stored.GetEndpoints() {
		if name := contract.CanonicalName(ep.GetName()); !held[name] {
			changed.Remove = append(changed.Remove, name)
		}
	}
	return changed
}

// holdEndpoint returns plan with endpoint name's records replaced by those
// of stored (the newest stored plan), or without the endpoint if stored
// has none. plan is not modified.
func holdEndpoint(plan, stored *pb.Plan, name string) *pb.Plan {
	name = contract.CanonicalName(name)
	out := &pb.Plan{PlannerId: plan.GetPlannerId()}
	var keep *pb.EndpointPlan
	for _, ep := range stored.GetEndpoints() {
		if contract.CanonicalName(ep.GetName()) == name {
			keep = ep
		}
	}
	for _, ep := range plan.GetEndpoints() {
		switch {
		case contract.CanonicalName(ep.GetName()) != name:
			out.Endpoints = append(out.Endpoints, ep)
		case keep != nil:
			out.Endpoints = append(out.Endpoints, &pb.EndpointPlan{Name: ep.GetName(), Ttl: keep.GetTtl(), Targets: keep.GetTargets(),
				MinHealthyTargets: keep.GetMinHealthyTargets(), MinHealthyFraction: keep.GetMinHealthyFraction()})
		}
	}
	return out
}

// planKey identifies a plan's content, to tell a repeated refusal from a
// new one.
func planKey(p *pb.Plan) string {
	b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(p)
	return string(b)
}

// changedEndpoints names the endpoints of desired whose records differ
// from stored's (all of them when nothing is stored), for the log.
func changedEndpoints(stored, desired *pb.Plan) []string {
	old := map[string]*pb.EndpointPlan{}
	for _, ep := range stored.GetEndpoints() {
		old[contract.CanonicalName(ep.GetName())] = ep
	}
	var out []string
	for _, ep := range desired.GetEndpoints() {
		o := old[ep.GetName()]
		if o == nil || !sameRecords(&pb.Plan{Endpoints: []*pb.EndpointPlan{o}}, &pb.Plan{Endpoints: []*pb.EndpointPlan{ep}}) {
			out = append(out, ep.GetName())
		}
	}
	return out
}

// Health returns the health of every target of the inventory that has a
// result (always, for a target without a check), by target id.
func (p *Planner) Health() map[string]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]bool, len(p.health))
	for id, h := range p.health {
		if h.known {
			out[id] = h.healthy
		}
	}
	return out
}

// Ready reports whether every target has a probe result, so that the
// planner can build a plan.
func (p *Planner) Ready() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.desired.ready
}

// Leading reports whether this planner holds the planner lease now.
func (p *Planner) Leading() bool { return p.leading.Load() }

// Inventory returns the inventory in use. It is shared: do not modify it.
func (p *Planner) Inventory() *Inventory {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.inv
}
