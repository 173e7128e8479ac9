package enactor

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Retry pauses: jittered, doubling from first to limit. The limit keeps a
// standby for a frozen cluster or a lost leader close behind it without
// flooding the log with refused applies.
const (
	retryFirst = 100 * time.Millisecond
	retryLimit = 2 * time.Second
)

// Pauses before applying refused endpoints again: the cluster's velocity
// window (60s by default) slides, so a refused change may be taken a few
// seconds later; there is no point asking much more often.
const (
	refusedRetryFirst = time.Second
	refusedRetryLimit = 10 * time.Second
)

// shard is one lease, enactor/<index>, and what this enactor knows of the
// plans while it stands by for it and holds it.
type shard struct {
	e     *Enactor
	index int
	lease string
	log   *slog.Logger

	// mu guards newest and from, which the watch goroutine writes and the
	// apply loop reads. They outlive one holding of the lease, so a watch
	// resumes where the last one stopped and a new holding knows the
	// newest plan at once.
	mu     sync.Mutex
	newest *pb.Plan
	from   uint64 // the generation the next watch starts at
	// changed gets a token (never blocking) when newest changes.
	changed chan struct{}
	// stopped are the generations whose staged rollout stopped while the
	// report of it did not freeze the cluster, with why (rollout.go);
	// only the apply loop uses it.
	stopped map[uint64]string
}

func newShard(e *Enactor, index int) *shard {
	name := LeaseName(index)
	return &shard{
		e:       e,
		index:   index,
		lease:   name,
		log:     e.log.With("lease", name),
		from:    1,
		changed: make(chan struct{}, 1),
		stopped: map[uint64]string{},
	}
}

// run stands by for the lease and enacts while holding it, until ctx ends.
func (s *shard) run(ctx context.Context) {
	for {
		err := s.e.leases.HoldLease(ctx, s.lease, s.e.cfg.ID, s.e.cfg.LeaseTTL, func(leaseCtx context.Context, l *pb.Lease) {
			s.hold(ctx, leaseCtx, l)
		})
		if ctx.Err() != nil {
			return
		}
		// HoldLease only returns when ctx ends (or the client is closed);
		// never spin on it.
		s.log.Error("holding lease ended unexpectedly; retrying", "err", err)
		if retry.Sleep(ctx, s.e.cfg.LeaseTTL) != nil {
			return
		}
	}
}

// hold is the work done under one grant of the lease, with its token. It
// returns when leaseCtx ends (the lease may be lost, or the enactor stops)
// or when the cluster fences the token, so HoldLease acquires anew.
func (s *shard) hold(runCtx, leaseCtx context.Context, lease *pb.Lease) {
	token := lease.GetToken()
	log := s.log.With("token", token)
	log.Info("lease acquired; enacting")
	s.e.setHeld(s.lease, token)
	defer s.e.setHeld(s.lease, 0)

	ctx, cancel := context.WithCancel(leaseCtx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()
	// The watch runs beside the apply loop so that a new plan is known the
	// moment it is committed, even while an apply or a back-off is under
	// way; it ends with the holding.
	wg.Go(func() { s.watch(ctx) })
	wg.Go(func() { s.checkNewest(ctx) })
	v := newVerifier(s, lease, log)
	// Read-back and clean-up run beside the apply loop so that a node that
	// is down (its read-backs failing until --converge-timeout) never
	// delays the next apply; they end with the holding.
	wg.Go(func() { v.run(ctx) })

	s.enact(runCtx, ctx, lease, v, log)
	log.Info("stopped enacting under this token")
}

// watch keeps newest up to date from the cluster's plan stream, resuming
// after the last plan seen, until ctx ends.
func (s *shard) watch(ctx context.Context) {
	pace := retry.Backoff{First: retryFirst, Limit: retryLimit}
	for {
		s.mu.Lock()
		from := s.from
		s.mu.Unlock()
		err := s.e.plans.WatchPlans(ctx, from, func(p *pb.Plan) error {
			s.mu.Lock()
			s.from = p.GetGeneration() + 1
			s.mu.Unlock()
			s.learn(p)
			pace.Reset()
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		// The client reconnects broken streams itself; it returns only on
		// an answer it cannot cure by reconnecting (a plan over a message
		// limit, a refused request): an operator must hear of it. Keep
		// trying anyway, more slowly; the newest-plan read goes on too.
		code := status.Code(err)
		s.e.metrics.watchErrors.WithLabelValues(code.String()).Inc()
		s.log.Error("watching plans failed with an answer reconnecting cannot cure; retrying", "from", from, "code", code, "err", err)
		if retry.Sleep(ctx, pace.Pause()) != nil {
			return
		}
	}
}

// checkNewest reads the newest plan linearizably at the start of a
// holding and every lease TTL after, and learns it like a watched plan.
//
// A watch stream can go quiet without failing: its node may be cut off
// from the quorum, its replica frozen while the cluster commits plans.
// The holder's renewals fail over to other nodes, so it keeps the lease
// and no standby can take over (L2). This read goes wherever a leader
// answers, so a holder learns of a newer plan within one lease TTL
// whatever its watch node does.
func (s *shard) checkNewest(ctx context.Context) {
	tick := time.NewTicker(s.e.cfg.LeaseTTL)
	defer tick.Stop()
	for {
		if s.e.gate.wait(ctx) != nil {
			return
		}
		p, err := s.e.planReader.GetPlan(ctx, &pb.GetPlanRequest{Newest: true})
		switch {
		case err == nil:
			if s.learn(p) {
				s.e.metrics.plansFoundByRead.Inc()
				s.log.Info("newest-plan read found a plan the watch had not delivered", "generation", p.GetGeneration())
			}
		case ctx.Err() != nil:
			return
		case status.Code(err) == codes.NotFound:
			// No plan is stored yet.
		default:
			s.log.Warn("reading the newest plan failed; retrying next period", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// learn makes p the newest plan known if it is newer than it, waking the
// apply loop; it reports whether it was. Watched plans and the newest
// plan read both come through here.
func (s *shard) learn(p *pb.Plan) bool {
	s.mu.Lock()
	newer := s.newest == nil || p.GetGeneration() > s.newest.GetGeneration()
	if newer {
		s.newest = p
	}
	s.mu.Unlock()
	if newer {
		select {
		case s.changed <- struct{}{}:
		default:
		}
	}
	return newer
}

// next returns the newest plan known whose generation is above done,
// waiting for one; or, when again fires first, the newest plan known
// whatever its generation (a retry of refused endpoints); nil when ctx
// ends. again may be nil.
//
// Skipping plans at or below done only saves work: the cluster decides,
// in the same step as the write, whether a plan is newer than what each
// endpoint serves, so re-applying an old plan is answered STALE and changes
// nothing. Removing this skip would make the loop re-send plans the cluster
// already answered, and change nothing about safety.
func (s *shard) next(ctx context.Context, done uint64, again <-chan time.Time) *pb.Plan {
	for {
		s.mu.Lock()
		p := s.newest
		s.mu.Unlock()
		if p != nil && p.GetGeneration() > done {
			return p
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.changed:
		case <-again:
			if p != nil {
				return p
			}
		}
	}
}

// endpoints is what an apply of p covers for this shard: nil (every
// endpoint of the plan) with one shard, else the plan's endpoints that
// hash to this shard; ok is false when the plan has none of them.
func (s *shard) endpoints(p *pb.Plan) (names []string, ok bool) {
	if s.e.cfg.Shards == 1 {
		return nil, true
	}
	for _, ep := range p.GetEndpoints() {
		if ShardOf(ep.GetName(), s.e.cfg.Shards) == s.index {
			names = append(names, ep.GetName())
		}
	}
	return names, len(names) > 0
}

// enact is the apply loop of one holding: apply the newest plan at once
// (a previous holder may have died half-way; a repeat is answered STALE),
// then every newer one as it comes.
//
// Nothing here decides whether a plan may be written: the cluster does,
// on each apply, with the token and the generation. The only local checks
// are courtesies (do not start an apply after the lease is known lost; do
// not re-send what was answered), and a stale decision of this loop, held
// up for any length of time, is fenced or answered STALE by the cluster.
//
// Endpoints the cluster refused (OUTCOME_REFUSED: the velocity limit, or
// emptying an address family) are applied again, alone, after a pause
// that grows from refusedRetryFirst to refusedRetryLimit: the velocity
// window slides, so a refused change may be taken later without any new
// plan. A newer plan replaces the retry.
func (s *shard) enact(runCtx, ctx context.Context, lease *pb.Lease, v *verifier, log *slog.Logger) {
	var done uint64   // newest generation the cluster answered (or that was skipped)
	var prev *pb.Plan // the plan of the last answered apply, which the next is compared with
	pace := retry.Backoff{First: retryFirst, Limit: retryLimit}
	// refused are endpoints of generation done that the cluster refused;
	// again fires when they are due to be applied again.
	var (
		refused      []string
		again        <-chan time.Time
		refusedPause = retry.Backoff{First: refusedRetryFirst, Limit: refusedRetryLimit}
	)
	for {
		plan := s.next(ctx, done, again)
		if plan == nil {
			return
		}
		gen := plan.GetGeneration()
		names, ok := s.endpoints(plan)
		if gen == done {
			// again fired and no newer plan came: retry what was refused.
			names, ok, again = refused, len(refused) > 0, nil
		}
		if !ok {
			done = gen // none of this shard's endpoints is in the plan
			continue
		}
		if ctx.Err() != nil {
			return
		}
		sent := time.Now()
		var (
			req     *pb.ApplyPlanRequest
			resp    *pb.ApplyPlanResponse
			outcome string
			err     error
			applied []string // of the last apply: the endpoints that serve its generation
		)
		if len(s.e.cfg.Waves) > 0 && gen != done {
			// A staged rollout (rollout.go): waves read back and baked
			// before the last, whose apply is answered here as any other.
			r := s.rollout(runCtx, ctx, plan, names, lease, v, log)
			if runCtx.Err() != nil || ctx.Err() != nil {
				return
			}
			req, resp, outcome, err = r.req, r.resp, r.outcome, r.err
			if r.resp != nil {
				applied, _ = s.serving(r.req, r.resp)
			}
			refused = r.refused
		} else {
			req = &pb.ApplyPlanRequest{
				Generation: gen,
				Endpoints:  names,
				LeaseName:  s.lease,
				LeaseToken: lease.GetToken(),
				EnactorId:  s.e.cfg.ID,
			}
			resp, outcome, err = s.apply(runCtx, req)
			if runCtx.Err() != nil {
				return
			}
			if outcome == outcomeApplied || outcome == outcomeStale || outcome == outcomeRefused {
				applied, refused = s.record(req, resp, log)
			}
		}
		switch outcome {
		case outcomeApplied, outcomeStale, outcomeRefused:
			pace.Reset()
			done = gen
			log.Info("plan "+outcome, "generation", gen, "endpoints_applied", len(applied),
				"endpoints_refused", len(refused), "endpoints", len(resp.GetResults()),
				"took", time.Since(sent).Round(time.Millisecond))
			if len(applied) > 0 || outcome == outcomeStale {
				s.e.metrics.appliedGeneration.WithLabelValues(s.lease).Set(float64(gen))
			}
			v.submit(convergeJob{generation: gen, endpoints: readBackSample(req, resp, plan, prev), sent: sent})
			prev = plan
			again = nil
			if len(refused) > 0 {
				d := refusedPause.Pause()
				log.Info("applying the refused endpoints again later", "generation", gen, "endpoints", refused, "in", d.Round(time.Millisecond))
				again = time.After(d)
			} else {
				refusedPause.Reset()
			}
		case outcomeFenced:
			// The cluster no longer takes this token: stop acting at once
			// and let HoldLease acquire the lease anew (or stand by).
			log.Warn("apply fenced by the cluster; giving the lease up", "generation", gen, "err", status.Convert(err).Message())
			return
		case outcomeFrozen:
			log.Warn("applies are frozen; retrying later", "generation", gen, "reason", errorMessage(err))
			if retry.Sleep(ctx, pace.Pause()) != nil {
				return
			}
			again = retryNow(gen == done)
		case outcomeHeld:
			// Never applicable: an operator reviews it, and a rollback or
			// a resubmission brings a newer plan through the watch.
			log.Warn("plan held for review by the cluster; skipping it", "generation", gen, "reason", status.Convert(err).Message())
			done, refused, again = gen, nil, nil
		case outcomeNotFound:
			// Deleted by clean-up before we got to it: a newer plan exists
			// (clean-up keeps the newest), and the watch brings it.
			log.Info("plan deleted before it was applied; skipping", "generation", gen, "err", status.Convert(err).Message())
			done, refused, again = gen, nil, nil
		default:
			// The client already retried Unavailable within its budget;
			// keep trying the newest plan, more slowly.
			log.Warn("apply failed; retrying", "generation", gen, "code", status.Code(err), "err", err)
			if retry.Sleep(ctx, pace.Pause()) != nil {
				return
			}
			again = retryNow(gen == done)
		}
	}
}

// apply sends one apply and names the cluster's answer (classify); the
// outcome is "" when runCtx ended first.
func (s *shard) apply(runCtx context.Context, req *pb.ApplyPlanRequest) (*pb.ApplyPlanResponse, string, error) {
	if hook := s.e.cfg.BeforeApply; hook != nil {
		hook(s.lease, req.GetGeneration())
	}
	// A paused enactor is held here, after deciding, and sends the same
	// request when resumed: the time between decision and write that
	// AWS's delayed enactor had. The gate waits on runCtx, not the
	// holding's context, for that reason.
	if s.e.gate.wait(runCtx) != nil {
		return nil, "", runCtx.Err()
	}
	// The apply runs on runCtx: a lease lost meanwhile does not abort it.
	// It is one conditional write, which the cluster fences if the token
	// was superseded; aborting would not unsend a request already on the
	// wire, and would hide the cluster's answer from the log and the
	// metrics.
	resp, err := s.e.applier.ApplyPlan(runCtx, req)
	if runCtx.Err() != nil {
		return nil, "", runCtx.Err()
	}
	outcome := s.classify(req, resp, err)
	s.e.metrics.applies.WithLabelValues(outcome).Inc()
	return resp, outcome, err
}

// errorMessage is a refusal's message, a gRPC status's or any error's.
func errorMessage(err error) string {
	if st, ok := status.FromError(err); ok {
		return st.Message()
	}
	return err.Error()
}

// retryNow is the again channel of an unanswered apply: a retry of
// refused endpoints (gen == done) must be sent again at once, since next
// would otherwise wait for a newer plan; any other apply is repeated by
// next anyway (its generation is still above done).
func retryNow(retrying bool) <-chan time.Time {
	if !retrying {
		return nil
	}
	return time.After(0)
}

// classify names the cluster's answer to an apply. FAILED_PRECONDITION
// means fenced, frozen or held, told apart by the refusal's reason (never
// by its text); anything but FROZEN and HELD counts as fenced: giving the lease up
// and acquiring it again is always safe.
func (s *shard) classify(req *pb.ApplyPlanRequest, resp *pb.ApplyPlanResponse, err error) string {
	switch status.Code(err) {
	case codes.OK:
		anyRefused := false
		for _, r := range resp.GetResults() {
			if serves(req, r) {
				return outcomeApplied
			}
			anyRefused = anyRefused || r.GetOutcome() == pb.Outcome_OUTCOME_REFUSED
		}
		if anyRefused {
			return outcomeRefused
		}
		return outcomeStale
	case codes.FailedPrecondition:
		switch client.Reason(err) {
		case contract.ReasonFrozen:
			return outcomeFrozen
		case contract.ReasonHeld:
			return outcomeHeld
		}
		return outcomeFenced
	case codes.NotFound:
		return outcomeNotFound
	}
	return outcomeError
}

// serves reports whether a result says the endpoint now serves the
// requested generation: APPLIED, or STALE at exactly that generation,
// which is what a retried apply whose first attempt succeeded (its answer
// lost) gets back. Either way the endpoint serves the plan and is read
// back; only STALE at a newer generation means this apply changed
// nothing.
func serves(req *pb.ApplyPlanRequest, r *pb.EndpointResult) bool {
	switch r.GetOutcome() {
	case pb.Outcome_OUTCOME_APPLIED:
		return true
	case pb.Outcome_OUTCOME_STALE:
		return r.GetAppliedGeneration() == req.GetGeneration()
	}
	return false
}

// serving returns an answered apply's endpoints that serve its
// generation and those the cluster refused, counting nothing.
func (s *shard) serving(req *pb.ApplyPlanRequest, resp *pb.ApplyPlanResponse) (applied, refused []string) {
	for _, r := range resp.GetResults() {
		switch {
		case serves(req, r):
			applied = append(applied, r.GetEndpoint())
		case r.GetOutcome() == pb.Outcome_OUTCOME_REFUSED:
			refused = append(refused, r.GetEndpoint())
		}
	}
	return applied, refused
}

// record counts an answered apply's endpoints and returns those that
// serve its generation (the ones to read back) and those the cluster
// refused (to apply again later), logging each refusal with its reason.
func (s *shard) record(req *pb.ApplyPlanRequest, resp *pb.ApplyPlanResponse, log *slog.Logger) (applied, refused []string) {
	m := s.e.metrics
	for _, r := range resp.GetResults() {
		switch {
		case serves(req, r):
			applied = append(applied, r.GetEndpoint())
			m.endpoints.WithLabelValues(outcomeApplied).Inc()
		case r.GetOutcome() == pb.Outcome_OUTCOME_REFUSED:
			refused = append(refused, r.GetEndpoint())
			m.endpoints.WithLabelValues(outcomeRefused).Inc()
			reason := contract.ParseReason(r.GetReason()).Metric()
			if reason == "" {
				reason = "unspecified"
			}
			m.refused.WithLabelValues(reason).Inc()
			log.Warn("endpoint refused the plan; will apply it again later", "generation", req.GetGeneration(),
				"endpoint", r.GetEndpoint(), "reason", reason, "detail", r.GetDetail(),
				"serves", r.GetAppliedGeneration())
		default:
			m.endpoints.WithLabelValues(outcomeStale).Inc()
		}
	}
	return applied, refused
}
