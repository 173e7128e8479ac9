package enactor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Staged rollout (--waves, --bake). Without it, an enactor applies a plan
// to every endpoint at once. With it, the endpoints a plan changes are
// applied wave by wave: the first wave a few endpoints (a canary), the
// next a larger share, the last the rest. After each wave but the last
// the enactor reads the wave back on every node, waits the bake time,
// and goes on only if
//
//   - every node served the wave within --converge-timeout,
//   - the cluster is not frozen, and
//   - no newer plan marks the wave's new targets unhealthy (weight 0, or
//     gone): a target that failed its health checks once it took traffic.
//
// Otherwise it stops: a failed read-back or an unhealthy new target is
// reported to the cluster (ReportDoubt, kind rollout), which records why
// and freezes, and the rest of the plan waits for an operator (ctl diff,
// ctl rollback, ctl unfreeze). A newer plan that marks nothing unhealthy
// replaces the rollout with its own.
//
// The rollout's progress is the replicated state, not the enactor's: an
// endpoint is done when it serves the plan's generation. A wave's size is
// cumulative over the endpoints the plan changes, done ones included, and
// endpoints the plan leaves as they are (same addresses, weights and TTL)
// are applied only with the last wave; so every endpoint serving the
// generation before the last wave is one a wave changed, and an enactor
// taking the lease over (or this one after a restart) counts the same
// waves done and goes on with the next, baking first. A cluster frozen by
// the report stays frozen for every enactor; after ctl unfreeze the
// rollout goes on with the next wave.

// Wave is one step of a staged rollout: a number of endpoints, or a
// percentage of the endpoints the plan changes; either counts the waves
// before it too.
type Wave struct {
	Count   int     // endpoints, when Percent is 0
	Percent float64 // in (0, 100]
}

func (w Wave) String() string {
	if w.Percent > 0 {
		return strconv.FormatFloat(w.Percent, 'g', -1, 64) + "%"
	}
	return strconv.Itoa(w.Count)
}

// size is how many of total changed endpoints the wave and those before
// it cover: at least one, at most total.
func (w Wave) size(total int) int {
	n := w.Count
	if w.Percent > 0 {
		n = int(math.Ceil(float64(total) * w.Percent / 100))
	}
	return min(max(n, 1), total)
}

// ParseWaves reads --waves: a comma-separated list of endpoint counts and
// percentages, cumulative, ending in 100% ("1,10%,100%"). Empty is no
// staged rollout.
func ParseWaves(s string) ([]Wave, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var waves []Wave
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if p, ok := strings.CutSuffix(f, "%"); ok {
			v, err := strconv.ParseFloat(p, 64)
			if err != nil || !(v > 0 && v <= 100) {
				return nil, fmt.Errorf("wave %q: want a percentage above 0 and at most 100", f)
			}
			waves = append(waves, Wave{Percent: v})
			continue
		}
		n, err := strconv.Atoi(f)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("wave %q: want a number of endpoints (1 or more) or a percentage (10%%)", f)
		}
		waves = append(waves, Wave{Count: n})
	}
	if last := waves[len(waves)-1]; last.Percent != 100 {
		return nil, fmt.Errorf("the last wave is %s: a rollout ends with 100%%", last)
	}
	return waves, nil
}

// rolloutResult is how a rollout ended, for the apply loop: the outcome
// of its last apply (outcomeApplied and the others of classify), or
// outcomeFrozen when it stopped; err is the refusal, if any.
type rolloutResult struct {
	outcome string
	err     error
	// req and resp are the last wave's apply, when it was answered;
	// applied and refused are the endpoints of every wave.
	req              *pb.ApplyPlanRequest
	resp             *pb.ApplyPlanResponse
	applied, refused []string
}

// errStopped is a rollout that stopped on doubt.
var errStopped = errors.New("staged rollout stopped")

// rollout applies plan to the endpoints names covers (nil: all) wave by
// wave. runCtx carries the applies, ctx the holding of the lease.
func (s *shard) rollout(runCtx, ctx context.Context, plan *pb.Plan, names []string, lease *pb.Lease, v *verifier, log *slog.Logger) rolloutResult {
	gen := plan.GetGeneration()
	if st, err := s.e.reader.Status(ctx); err == nil && st.GetFrozen() {
		// Frozen by the rollout's own report or by anything else: nothing
		// goes on until an operator unfreezes, and no wave is wasted.
		return rolloutResult{outcome: outcomeFrozen, err: status.Errorf(codes.FailedPrecondition, "the cluster is frozen: %s", st.GetFreezeReason())}
	}
	if why, ok := s.stopped[gen]; ok {
		// The report of this stop did not freeze the cluster (it failed,
		// or the cluster's version does not take it): hold the plan here
		// and report again.
		if v.report(ctx, rolloutDoubt(gen, nil, why)) {
			delete(s.stopped, gen)
		}
		return rolloutResult{outcome: outcomeFrozen, err: fmt.Errorf("%w: %s", errStopped, why)}
	}
	served, err := s.e.reader.AllApplied(ctx, false)
	if err != nil {
		return rolloutResult{outcome: outcomeError, err: err}
	}
	st := stage(plan, names, served)
	log.Info("staged rollout", "generation", gen, "changed", st.total, "done", st.done,
		"unchanged", len(st.unchanged), "waves", s.e.cfg.Waves, "bake", s.e.cfg.Bake)

	var out rolloutResult
	done := st.done
	for i, w := range s.e.cfg.Waves {
		last := i == len(s.e.cfg.Waves)-1
		upto := w.size(st.total)
		if !last && upto <= done {
			continue // an earlier holding applied this wave
		}
		batch := st.pending[:max(0, upto-st.done)]
		batch = batch[min(len(batch), done-st.done):]
		if last {
			batch = append(slices.Clip(batch), st.unchanged...)
		}
		if len(batch) == 0 {
			continue
		}
		req := &pb.ApplyPlanRequest{Generation: gen, Endpoints: batch, LeaseName: s.lease,
			LeaseToken: lease.GetToken(), EnactorId: s.e.cfg.ID}
		resp, outcome, err := s.apply(runCtx, req)
		out.req, out.resp, out.outcome, out.err = req, resp, outcome, err
		switch outcome {
		case outcomeApplied, outcomeStale, outcomeRefused:
		default:
			return out // fenced, frozen, held, not found, an error: the loop's to handle
		}
		applied, refused := s.record(req, resp, log)
		out.applied = append(out.applied, applied...)
		out.refused = append(out.refused, refused...)
		done += len(batch)
		if last {
			break
		}
		log.Info("wave applied; reading it back", "generation", gen, "wave", i+1, "of", len(s.e.cfg.Waves),
			"endpoints", len(applied), "refused", len(refused))
		if why := s.checkWave(ctx, v, gen, applied, st, i); why != "" {
			if ctx.Err() != nil {
				return rolloutResult{} // the holding ended, not the wave
			}
			s.e.metrics.waves.WithLabelValues("stopped").Inc()
			log.Error("staged rollout stopped", "generation", gen, "wave", i+1, "why", why)
			if !v.report(ctx, rolloutDoubt(gen, firstN(applied, contract.MaxDoubtEndpoints), why)) {
				s.stopped[gen] = why
			}
			return rolloutResult{outcome: outcomeFrozen, err: fmt.Errorf("%w: %s", errStopped, why)}
		}
		if ctx.Err() != nil {
			return rolloutResult{}
		}
		if newer := s.newestGeneration(); newer > gen {
			s.e.metrics.waves.WithLabelValues("abandoned").Inc()
			log.Info("a newer plan replaces the staged rollout", "generation", gen, "newer", newer, "after_wave", i+1)
			return out
		}
		s.e.metrics.waves.WithLabelValues("passed").Inc()
	}
	if out.outcome == "" {
		out.outcome = outcomeStale // every endpoint serves this plan or a newer one
	}
	return out
}

// checkWave reads wave i's applied endpoints back on every node, bakes,
// and says why the rollout must stop ("" if it goes on).
func (s *shard) checkWave(ctx context.Context, v *verifier, gen uint64, applied []string, st staged, i int) string {
	if len(applied) > 0 {
		rb := newReadBack(convergeJob{generation: gen, endpoints: applied, sent: time.Now()})
		if !v.readBackUntil(ctx, rb, time.Now().Add(s.e.cfg.ConvergeTimeout)) {
			return fmt.Sprintf("wave %d (%d endpoints) not served by every node within %s: %s",
				i+1, len(applied), s.e.cfg.ConvergeTimeout, strings.Join(firstN(rb.lagging, 8), "; "))
		}
	}
	if retry.Sleep(ctx, s.e.cfg.Bake) != nil || s.e.gate.wait(ctx) != nil {
		return "the holding ended"
	}
	if st, err := s.e.reader.Status(ctx); err == nil && st.GetFrozen() {
		return "" // the next wave's apply finds it frozen; nothing to report
	}
	s.mu.Lock()
	newest := s.newest
	s.mu.Unlock()
	if newest.GetGeneration() <= gen {
		return ""
	}
	if bad := unhealthyNew(newest, applied, st); len(bad) > 0 {
		return fmt.Sprintf("generation %d marks targets wave %d brought in unhealthy: %s",
			newest.GetGeneration(), i+1, strings.Join(firstN(bad, 8), "; "))
	}
	return ""
}

func (s *shard) newestGeneration() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.newest.GetGeneration()
}

func rolloutDoubt(gen uint64, endpoints []string, why string) *pb.ReportDoubtRequest {
	return &pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_ROLLOUT, Generation: gen, Endpoints: endpoints, Detail: why}
}

// staged is a plan's endpoints sorted out for a rollout against what is
// served: done (serving the generation), pending (changed, by name), and
// unchanged (serving an older generation's same records).
type staged struct {
	done      int
	total     int // done + len(pending)
	pending   []string
	unchanged []string
	// added are, per pending endpoint, the addresses the plan serves that
	// it does not serve now: the targets its wave brings in.
	added map[string][]string
}

func stage(plan *pb.Plan, names []string, served []*pb.AppliedEndpoint) staged {
	gen := plan.GetGeneration()
	byName := make(map[string]*pb.AppliedEndpoint, len(served))
	for _, a := range served {
		byName[a.GetEndpoint()] = a
	}
	var covered map[string]bool
	if names != nil {
		covered = make(map[string]bool, len(names))
		for _, n := range names {
			covered[n] = true
		}
	}
	st := staged{added: map[string][]string{}}
	for _, ep := range plan.GetEndpoints() {
		name := contract.CanonicalName(ep.GetName())
		if covered != nil && !covered[name] {
			continue
		}
		cur := byName[name]
		switch {
		case cur.GetGeneration() == gen:
			st.done++
		case cur.GetGeneration() > gen:
			// Serves a newer plan already: an apply would be STALE.
		case cur != nil && cur.GetTtl() == ep.GetTtl() && maps.Equal(weights(cur.GetTargets()), weights(ep.GetTargets())):
			st.unchanged = append(st.unchanged, name)
		default:
			st.pending = append(st.pending, name)
			old := weights(cur.GetTargets())
			for addr := range weights(ep.GetTargets()) {
				if old[addr] == 0 {
					st.added[name] = append(st.added[name], addr)
				}
			}
		}
	}
	slices.Sort(st.pending)
	slices.Sort(st.unchanged)
	st.total = st.done + len(st.pending)
	return st
}

// unhealthyNew lists the targets the wave's endpoints brought in that
// plan newest serves at weight 0 or not at all.
func unhealthyNew(newest *pb.Plan, wave []string, st staged) []string {
	eps := make(map[string]*pb.EndpointPlan, len(newest.GetEndpoints()))
	for _, e := range newest.GetEndpoints() {
		eps[contract.CanonicalName(e.GetName())] = e
	}
	var bad []string
	for _, name := range wave {
		ep := eps[name]
		if ep == nil {
			continue // the newer plan leaves the endpoint as it is
		}
		now := weights(ep.GetTargets())
		for _, addr := range st.added[name] {
			if now[addr] == 0 {
				bad = append(bad, name+" "+addr)
			}
		}
	}
	slices.Sort(bad)
	return bad
}

// weights sums what each address serves, leaving weight 0 out; addresses
// in their canonical spelling.
func weights(ts []*pb.Target) map[string]uint64 {
	out := make(map[string]uint64, len(ts))
	for _, t := range ts {
		if t.GetWeight() == 0 {
			continue
		}
		addr := t.GetAddress()
		if a, err := contract.ParseAddress(addr); err == nil {
			addr = a.String()
		}
		out[addr] += uint64(t.GetWeight())
	}
	return out
}
