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
// the enactor reads the wave back on the nodes, waits the bake time, and
// goes on only if
//
//   - no member answered an older generation within --converge-timeout
//     (members that do not answer are ridden out while a majority
//     answers; a majority not answering holds the rollout),
//   - the cluster is not frozen, and
//   - no newer plan marks a target the waves brought in unhealthy
//     (weight 0, or gone): a target that failed its health checks once
//     it took traffic.
//
// Otherwise it stops: the endpoints with unhealthy new targets move to
// the newer plan, and the stop is reported to the cluster (ReportDoubt,
// kind rollout), which records why and freezes; the rest of the plan
// waits for an operator (ctl diff, ctl rollback, ctl unfreeze). A wave
// the cluster refused whole holds the rollout, to be tried again.
//
// The rollout's progress is the replicated state, not the enactor's: an
// endpoint is done when it serves the plan's generation. A wave's size is
// cumulative over the endpoints the plan changes, done ones included, and
// endpoints the plan leaves as they are (same addresses, weights and TTL)
// are applied only with the last wave; so every endpoint serving the
// generation before the last wave is one a wave changed, and an enactor
// taking the lease over (or this one after a restart or an unfreeze)
// counts the same waves done, reads them back and bakes them again, and
// goes on with the next. Endpoints a newer plan holds are left to that
// plan's rollout. With several shards, each shard's lease rolls its own
// endpoints out in its own waves.

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
// outcomeFrozen when it stopped, outcomeError when a wave waits to be
// tried again, outcomeFenced when its report was fenced; err says why.
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
	for g := range s.stopped {
		if g < gen {
			delete(s.stopped, g) // a newer plan is rolled out: the old stop is moot
		}
	}
	if why, ok := s.stopped[gen]; ok {
		// The report of this stop did not freeze the cluster (it failed,
		// or the cluster's version does not take it): hold the plan here
		// and report again.
		switch v.report(ctx, rolloutDoubt(gen, nil, why)) {
		case reportFrozen:
			delete(s.stopped, gen)
		case reportFenced:
			delete(s.stopped, gen)
			return rolloutResult{outcome: outcomeFenced, err: errors.New("report of doubt fenced")}
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
	if st.done > 0 && st.done < st.total {
		// Taking over in the middle of a rollout (or going on after an
		// unfreeze): what the earlier waves applied is read back and
		// baked again before the next wave.
		if r, ok := s.afterWave(runCtx, ctx, v, gen, st, st.doneNames, st.doneNames, "the waves applied before", log); !ok {
			return r
		}
	}

	var out rolloutResult
	done := st.done
	var rolled []string // endpoints the waves of this call applied
	for i, w := range s.e.cfg.Waves {
		last := i == len(s.e.cfg.Waves)-1
		upto := w.size(st.total)
		if !last && upto <= done {
			continue // an earlier holding applied this wave
		}
		batch := st.pending[:max(0, upto-st.done)]
		batch = batch[min(len(batch), done-st.done):]
		done += len(batch)
		if last {
			batch = append(slices.Clip(batch), st.unchanged...)
		}
		// Endpoints a newer plan holds are left to its own rollout; the
		// others go on with this one, so a partial newer plan does not
		// leave this one half-done.
		batch = s.notInNewer(gen, batch)
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
		if last {
			break
		}
		if len(applied) == 0 {
			// A wave the cluster refused whole (the velocity limit) proves
			// nothing; the next one must not go out without it.
			s.e.metrics.waves.WithLabelValues("held").Inc()
			return rolloutResult{outcome: outcomeError, err: fmt.Errorf("wave %d: the cluster refused all %d endpoints (%s); the rollout tries it again later",
				i+1, len(batch), strings.Join(firstN(refused, 4), ", "))}
		}
		rolled = append(rolled, applied...)
		log.Info("wave applied; reading it back", "generation", gen, "wave", i+1, "of", len(s.e.cfg.Waves),
			"endpoints", len(applied), "refused", len(refused))
		if r, ok := s.afterWave(runCtx, ctx, v, gen, st, applied, rolled, fmt.Sprintf("wave %d", i+1), log); !ok {
			return r
		}
	}
	if out.outcome == "" {
		out.outcome = outcomeStale // every endpoint serves this plan or a newer one
	}
	return out
}

// afterWave checks a wave (checkWave) and acts on what it found: ok to go
// on, or the result the rollout ends with. A stop drains the endpoints
// whose new targets the newest plan marks unhealthy (applying the newest
// plan to them) before it reports, so the freeze does not keep their
// clients on those targets.
func (s *shard) afterWave(runCtx, ctx context.Context, v *verifier, gen uint64, st staged, wave, rolled []string, what string, log *slog.Logger) (rolloutResult, bool) {
	c := s.checkWave(ctx, v, gen, st, wave, rolled, what)
	switch {
	case ctx.Err() != nil:
		return rolloutResult{}, false // the holding ended, not the wave
	case c.hold != "":
		s.e.metrics.waves.WithLabelValues("held").Inc()
		log.Warn("staged rollout waits", "generation", gen, "why", c.hold)
		return rolloutResult{outcome: outcomeError, err: errors.New(c.hold)}, false
	case c.stop == "":
		s.e.metrics.waves.WithLabelValues("passed").Inc()
		return rolloutResult{}, true
	}
	if len(c.drain) > 0 {
		req := &pb.ApplyPlanRequest{Generation: c.newest, Endpoints: c.drain, LeaseName: s.lease,
			LeaseToken: v.lease.GetToken(), EnactorId: s.e.cfg.ID}
		_, outcome, err := s.apply(runCtx, req)
		log.Warn("moved the endpoints with unhealthy new targets to the newest plan before stopping", "generation", c.newest,
			"endpoints", c.drain, "outcome", outcome, "err", err)
	}
	s.e.metrics.waves.WithLabelValues("stopped").Inc()
	log.Error("staged rollout stopped", "generation", gen, "why", c.stop)
	switch v.report(ctx, rolloutDoubt(gen, firstN(rolled, contract.MaxDoubtEndpoints), c.stop)) {
	case reportFenced:
		return rolloutResult{outcome: outcomeFenced, err: errors.New("report of doubt fenced")}, false
	case reportFrozen:
	default:
		s.stopped[gen] = c.stop
	}
	return rolloutResult{outcome: outcomeFrozen, err: fmt.Errorf("%w: %s", errStopped, c.stop)}, false
}

// waveCheck is what checking a wave found: why the rollout stops (and the
// cluster should freeze), or why the wave waits to be tried again, or
// neither. drain are endpoints to move to generation newest first.
type waveCheck struct {
	stop, hold string
	drain      []string
	newest     uint64
}

// checkWave reads the wave's endpoints back on every node, bakes, and
// checks the endpoints rolled so far against the newest plan. A member
// that answers an older generation stops the rollout; members that do
// not answer (down, cut off from this enactor) do not, as long as a
// majority answered: a node down during a rollout is no reason to
// freeze. Before stopping on the read-back, one fresh round, so a pause
// of this enactor's own is not taken for the nodes lagging.
func (s *shard) checkWave(ctx context.Context, v *verifier, gen uint64, st staged, wave, rolled []string, what string) waveCheck {
	rb := newReadBack(convergeJob{generation: gen, endpoints: wave, sent: time.Now()})
	timeout := s.e.cfg.ConvergeTimeout
	if !v.readBackUntil(ctx, rb, time.Now().Add(timeout)) && !v.readBackUntil(ctx, rb, time.Now().Add(readBackLast)) {
		switch {
		case ctx.Err() != nil:
			return waveCheck{}
		case len(rb.older) > 0:
			return waveCheck{stop: fmt.Sprintf("%s (%d endpoints) not served within %s by %s: %s", what, len(wave), timeout,
				strings.Join(rb.olderNodes(), ", "), strings.Join(firstN(rb.lagging, 8), "; "))}
		case 2*len(rb.unreached) >= rb.members:
			return waveCheck{hold: fmt.Sprintf("%s: %d of %d members did not answer its read-back (%s); the rollout tries again later",
				what, len(rb.unreached), rb.members, strings.Join(firstN(rb.lagging, 4), "; "))}
		}
		v.log.Warn("members did not answer the read-back; going on with the majority that serves the wave",
			"generation", gen, "unreached", slices.Sorted(maps.Keys(rb.unreached)))
	}
	if retry.Sleep(ctx, s.e.cfg.Bake) != nil || s.e.gate.wait(ctx) != nil {
		return waveCheck{}
	}
	if st, err := s.e.reader.Status(ctx); err == nil && st.GetFrozen() {
		return waveCheck{} // the next wave's apply finds it frozen; nothing to report
	}
	s.mu.Lock()
	newest := s.newest
	s.mu.Unlock()
	if newest.GetGeneration() <= gen {
		return waveCheck{}
	}
	if drain, bad := unhealthyNew(newest, rolled, st); len(bad) > 0 {
		return waveCheck{
			stop: fmt.Sprintf("generation %d marks targets %s brought in unhealthy: %s",
				newest.GetGeneration(), what, strings.Join(firstN(bad, 8), "; ")),
			drain:  drain,
			newest: newest.GetGeneration(),
		}
	}
	return waveCheck{}
}

// notInNewer leaves out of batch the endpoints that the newest plan known,
// if newer than gen, holds.
func (s *shard) notInNewer(gen uint64, batch []string) []string {
	s.mu.Lock()
	newest := s.newest
	s.mu.Unlock()
	if newest.GetGeneration() <= gen {
		return batch
	}
	held := make(map[string]bool, len(newest.GetEndpoints()))
	for _, ep := range newest.GetEndpoints() {
		held[contract.CanonicalName(ep.GetName())] = true
	}
	var out []string
	for _, name := range batch {
		if !held[name] {
			out = append(out, name)
		}
	}
	return out
}

func rolloutDoubt(gen uint64, endpoints []string, why string) *pb.ReportDoubtRequest {
	return &pb.ReportDoubtRequest{Kind: pb.DoubtKind_DOUBT_KIND_ROLLOUT, Generation: gen, Endpoints: endpoints, Detail: why}
}

// staged is a plan's endpoints sorted out for a rollout against what is
// served: done (serving the generation), pending (changed, by name), and
// unchanged (serving an older generation's same records).
type staged struct {
	done      int
	doneNames []string
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
			st.doneNames = append(st.doneNames, name)
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

// unhealthyNew lists the endpoints of rolled whose targets brought in by
// the rollout plan newest serves at weight 0 or not at all, and those
// targets ("endpoint address").
func unhealthyNew(newest *pb.Plan, rolled []string, st staged) (names, bad []string) {
	eps := make(map[string]*pb.EndpointPlan, len(newest.GetEndpoints()))
	for _, e := range newest.GetEndpoints() {
		eps[contract.CanonicalName(e.GetName())] = e
	}
	for _, name := range rolled {
		ep := eps[name]
		if ep == nil {
			continue // the newer plan leaves the endpoint as it is
		}
		now := weights(ep.GetTargets())
		found := false
		for _, addr := range st.added[name] {
			if now[addr] == 0 {
				bad = append(bad, name+" "+addr)
				found = true
			}
		}
		if found {
			names = append(names, name)
		}
	}
	slices.Sort(bad)
	return names, bad
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
