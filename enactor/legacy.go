package enactor

// LEGACY: the enactor of the design that failed in the AWS outage of
// October 2025, kept apart from the fixed code path so the same cluster,
// checker and tests can show the difference (docs/DESIGN.md section 7). It runs
// only with Config.Legacy (dnsplan enactor --legacy) against nodes started
// with --legacy. Nothing in the fixed enactor calls it. Never use it for
// real.
//
// It mirrors the enactors of the AWS post-event summary:
//
//   - It holds no lease. The AWS enactors ran independently, one per
//     availability zone, each applying plans on its own; a lease without a
//     token checked at the write would have changed nothing, so none is
//     taken.
//   - It picks the newest plan and checks ONCE, at the start, that the
//     plan is newer than what every endpoint of it has applied. Then it
//     writes endpoint by endpoint (LegacyApply, unconditional), pausing
//     LegacyDelay between writes, and then runs the age-based clean-up
//     (LegacyCleanup, keeping LegacyKeep generations). The check is long
//     stale by the time of the last write: the time-of-check/time-of-use
//     race.
//   - The check compares against the applied plan, which it has to look
//     up. When an endpoint points at a plan the clean-up deleted, the
//     check fails, on every later plan too: the state the original could
//     not leave without an operator.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

var (
	// ErrLegacyPlanMissing is the legacy check's failure when an endpoint
	// points at a plan that no longer exists. Nothing in the legacy design
	// clears it: every later plan fails the same check.
	ErrLegacyPlanMissing = errors.New("legacy check: the applied plan no longer exists")
	// ErrLegacyNotNewer means the plan is not newer than what an endpoint
	// has applied; a legacy pass skips it.
	ErrLegacyNotNewer = errors.New("legacy check: the plan is not newer than the applied one")
	// errNotLegacy is returned by the legacy steps of a fixed enactor.
	errNotLegacy = errors.New("enactor: not a legacy enactor (Config.Legacy is off)")
)

// Outcomes of a legacy pass, the values of
// dnsplan_enactor_legacy_passes_total's label.
const (
	legacyApplied     = "applied"      // the check passed and every endpoint was written
	legacyNotNewer    = "not_newer"    // the check found the plan not newer; skipped
	legacyPlanMissing = "plan_missing" // the check failed: an applied plan is deleted
	legacyError       = "error"        // a read or a write failed
)

// LegacyCluster is what the legacy enactor needs of the cluster;
// *client.Client implements it.
type LegacyCluster interface {
	GetApplied(ctx context.Context, req *pb.GetAppliedRequest) (*pb.AppliedEndpoint, error)
	GetPlan(ctx context.Context, req *pb.GetPlanRequest) (*pb.Plan, error)
	LegacyApply(ctx context.Context, req *pb.LegacyApplyRequest) (*pb.LegacyApplyResponse, error)
	LegacyCleanup(ctx context.Context, req *pb.LegacyCleanupRequest) (*pb.LegacyCleanupResponse, error)
}

var _ LegacyCluster = (*client.Client)(nil)

// legacyEnactor is what an Enactor built with Config.Legacy adds: the
// legacy calls and their metrics.
type legacyEnactor struct {
	cluster LegacyCluster
	passes  *prometheus.CounterVec
	writes  *prometheus.CounterVec
}

func newLegacyEnactor(cfg Config) (*legacyEnactor, error) {
	l := &legacyEnactor{
		cluster: cfg.Client,
		passes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_legacy_passes_total",
			Help: "LEGACY enactor passes by outcome: applied, not_newer, plan_missing (blocked), error.",
		}, []string{"outcome"}),
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dnsplan_enactor_legacy_writes_total",
			Help: "LEGACY unconditional endpoint writes by outcome: ok or error.",
		}, []string{"outcome"}),
	}
	for _, c := range []prometheus.Collector{l.passes, l.writes} {
		if err := cfg.Registerer.Register(c); err != nil {
			return nil, err
		}
	}
	for _, o := range []string{legacyApplied, legacyNotNewer, legacyPlanMissing, legacyError} {
		l.passes.WithLabelValues(o)
	}
	l.writes.WithLabelValues("ok")
	l.writes.WithLabelValues("error")
	return l, nil
}

// LegacyCheck is the legacy enactor's one-time check, made once at the
// start of a pass: it reads what each endpoint of plan has applied and
// returns the newest applied generation. It fails with
// ErrLegacyNotNewer when plan is not newer than that, and with
// ErrLegacyPlanMissing when an endpoint points at a deleted plan.
//
// The legacy steps (LegacyCheck, LegacyWrite, LegacyCleanup) are exported
// so that a demonstration (package scenario) can drive one step at a time
// exactly what Run does in a legacy pass.
func (e *Enactor) LegacyCheck(ctx context.Context, plan *pb.Plan) (newestApplied uint64, err error) {
	if e.legacy == nil {
		return 0, errNotLegacy
	}
	c := e.legacy.cluster
	for _, ep := range plan.GetEndpoints() {
		name := ep.GetName()
		a, err := c.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: name})
		if status.Code(err) == codes.NotFound {
			continue // never applied: anything is newer
		}
		if err != nil {
			return 0, fmt.Errorf("legacy check: reading what %s has applied: %w", name, err)
		}
		if a.GetLegacyPointer() {
			// The old enactor compared against the applied plan, which it
			// looked up by the endpoint's pointer. A pointer to a deleted
			// plan made that lookup, and so the check, fail.
			_, err := c.GetPlan(ctx, &pb.GetPlanRequest{Generation: a.GetGeneration()})
			if status.Code(err) == codes.NotFound {
				return 0, fmt.Errorf("%w: %s points at generation %d, which is deleted", ErrLegacyPlanMissing, name, a.GetGeneration())
			}
			if err != nil {
				return 0, fmt.Errorf("legacy check: reading generation %d, applied to %s: %w", a.GetGeneration(), name, err)
			}
		}
		newestApplied = max(newestApplied, a.GetGeneration())
	}
	if plan.GetGeneration() <= newestApplied {
		return newestApplied, fmt.Errorf("%w: generation %d, applied %d", ErrLegacyNotNewer, plan.GetGeneration(), newestApplied)
	}
	return newestApplied, nil
}

// LegacyWrite points one endpoint at generation, unconditionally: the
// cluster checks neither the generation nor any lease.
func (e *Enactor) LegacyWrite(ctx context.Context, generation uint64, endpoint string) error {
	if e.legacy == nil {
		return errNotLegacy
	}
	_, err := e.legacy.cluster.LegacyApply(ctx, &pb.LegacyApplyRequest{Generation: generation, Endpoint: endpoint, EnactorId: e.cfg.ID})
	if err != nil {
		e.legacy.writes.WithLabelValues("error").Inc()
		return fmt.Errorf("legacy write of generation %d to %s: %w", generation, endpoint, err)
	}
	e.legacy.writes.WithLabelValues("ok").Inc()
	return nil
}

// LegacyCleanup deletes every plan more than LegacyKeep generations older
// than the newest, applied or not, and returns the deleted generations.
func (e *Enactor) LegacyCleanup(ctx context.Context) ([]uint64, error) {
	if e.legacy == nil {
		return nil, errNotLegacy
	}
	resp, err := e.legacy.cluster.LegacyCleanup(ctx, &pb.LegacyCleanupRequest{KeepGenerations: e.cfg.LegacyKeep})
	if err != nil {
		e.metrics.cleanups.WithLabelValues("error").Inc()
		return nil, fmt.Errorf("legacy clean-up: %w", err)
	}
	e.metrics.cleanups.WithLabelValues("ok").Inc()
	e.metrics.plansDeleted.Add(float64(len(resp.GetDeleted())))
	return resp.GetDeleted(), nil
}

// runLegacy is Run for a legacy enactor: a pass on each newest plan, until
// ctx ends.
func (e *Enactor) runLegacy(ctx context.Context) error {
	log := e.log.With("design", "legacy")
	log.Warn("LEGACY enactor running: no lease, a one-time check, unconditional writes, age-based clean-up; a demonstration of the AWS failure, never for real use",
		"legacy_delay", e.cfg.LegacyDelay, "legacy_keep", e.cfg.LegacyKeep)
	// The shard's plan watch keeps the newest plan known; the shard's
	// lease is never taken.
	s := newShard(e, 0)
	s.log = log
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// The watch runs beside the passes, so a pass always starts on the
	// newest plan committed by then; it ends with Run.
	wg.Go(func() { s.watch(ctx) })

	var done uint64 // newest generation a pass wrote, or found not newer
	pace := retry.Backoff{First: retryFirst, Limit: retryLimit}
	for {
		plan := s.next(ctx, done, nil)
		if plan == nil {
			log.Info("enactor stopped")
			return nil
		}
		err := e.legacyPass(ctx, plan, log)
		switch {
		case ctx.Err() != nil:
			log.Info("enactor stopped")
			return nil
		case err == nil || errors.Is(err, ErrLegacyNotNewer):
			done = plan.GetGeneration()
			pace.Reset()
		default:
			// The old enactors retried. A check that failed because an
			// applied plan was deleted fails again on every retry and on
			// every later plan: the design has no path back.
			log.Error("legacy pass failed; retrying with the newest plan", "generation", plan.GetGeneration(), "err", err)
			if retry.Sleep(ctx, pace.Pause()) != nil {
				log.Info("enactor stopped")
				return nil
			}
		}
	}
}

// legacyPass is one pass of the old enactor over plan: the one-time check,
// the writes endpoint by endpoint, the age-based clean-up.
func (e *Enactor) legacyPass(ctx context.Context, plan *pb.Plan, log *slog.Logger) error {
	gen := plan.GetGeneration()
	newest, err := e.LegacyCheck(ctx, plan)
	switch {
	case errors.Is(err, ErrLegacyNotNewer):
		e.legacy.passes.WithLabelValues(legacyNotNewer).Inc()
		log.Info("plan not newer than the applied one; skipped", "generation", gen, "applied", newest)
		return err
	case errors.Is(err, ErrLegacyPlanMissing):
		e.legacy.passes.WithLabelValues(legacyPlanMissing).Inc()
		return err
	case err != nil:
		e.legacy.passes.WithLabelValues(legacyError).Inc()
		return err
	}
	log.Info("one-time check passed; writing endpoint by endpoint", "generation", gen, "applied", newest,
		"endpoints", len(plan.GetEndpoints()))
	start := time.Now()
	for i, ep := range plan.GetEndpoints() {
		// The delay is the point: nothing is checked again after it.
		if i > 0 && retry.Sleep(ctx, e.cfg.LegacyDelay) != nil {
			return ctx.Err()
		}
		if hook := e.cfg.BeforeApply; hook != nil {
			hook("", gen) // no lease in the legacy design
		}
		// A paused legacy enactor is held here, its check already made.
		if e.gate.wait(ctx) != nil {
			return ctx.Err()
		}
		if err := e.LegacyWrite(ctx, gen, ep.GetName()); err != nil {
			e.legacy.passes.WithLabelValues(legacyError).Inc()
			return err
		}
	}
	deleted, err := e.LegacyCleanup(ctx)
	if err != nil {
		// The plan is written; a failed clean-up is retried after the next
		// pass, as in the fixed enactor.
		log.Warn("legacy clean-up failed", "err", err)
	} else if len(deleted) > 0 {
		log.Info("old plans deleted by age", "deleted", deleted, "legacy_keep", e.cfg.LegacyKeep)
	}
	e.legacy.passes.WithLabelValues(legacyApplied).Inc()
	log.Info("plan written", "generation", gen, "endpoints", len(plan.GetEndpoints()), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
