package scenario

import (
	"context"
	"errors"
	"fmt"

	"github.com/dnsplan/dnsplan/enactor"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// legacy replays the interleaving against the legacy design: nodes started
// with --legacy, and two legacy enactors (enactor.Config.Legacy) whose
// steps (the one-time check, each endpoint's write, the clean-up) the
// script calls one at a time, in the order of the AWS summary. They are
// the same calls a legacy enactor's Run makes; at the end Run itself is
// started on both.
func (r *run) legacy(ctx context.Context) error {
	var enactors []*loop
	for _, id := range []string{delayedID, otherID} {
		cl, closeClient, err := r.actorClient(id)
		if err != nil {
			return err
		}
		defer closeClient()
		l, err := r.newEnactor(id, true, cl)
		if err != nil {
			return err
		}
		enactors = append(enactors, l)
	}
	a, b := enactors[0].e, enactors[1].e

	// 1. The planner makes generation 1; az-b applies it everywhere.
	p1, err := r.submit(ctx)
	if err != nil {
		return err
	}
	if err := r.record(ctx, plannerID, "submit a plan for 4 endpoints", fmt.Sprintf("stored as generation %d", p1.GetGeneration())); err != nil {
		return err
	}
	if err := r.legacyCheckStep(ctx, otherID, b, p1); err != nil {
		return err
	}
	if err := r.legacyWriteStep(ctx, otherID, b, p1, endpointNames(p1)); err != nil {
		return err
	}
	if err := r.legacyCleanupStep(ctx, otherID, b); err != nil {
		return err
	}

	// 2. Generation 2; az-a makes its one-time check, then is delayed
	// before its first write (the regional endpoint).
	p2, err := r.submit(ctx)
	if err != nil {
		return err
	}
	if err := r.record(ctx, plannerID, "submit a plan", fmt.Sprintf("generation %d", p2.GetGeneration())); err != nil {
		return err
	}
	newest, err := a.LegacyCheck(ctx, p2)
	if err != nil {
		return fmt.Errorf("%s: one-time check of generation %d: %w", delayedID, p2.GetGeneration(), err)
	}
	if err := r.record(ctx, delayedID, fmt.Sprintf("one-time check: is generation %d newer than what is applied?", p2.GetGeneration()),
		fmt.Sprintf("yes (applied: %d); then delayed (retrying) before its first write, to %s", newest, Regional)); err != nil {
		return err
	}

	// 3. Many newer plans.
	first, p12, err := r.submitMany(ctx, newestBeforeRace)
	if err != nil {
		return err
	}
	if err := r.record(ctx, plannerID, "submit a plan, again and again",
		fmt.Sprintf("generations %d to %d", first.GetGeneration(), p12.GetGeneration())); err != nil {
		return err
	}

	// 4. az-b applies the newest to every endpoint, then its clean-up
	// starts; az-a's delayed write lands before the clean-up deletes.
	if err := r.legacyCheckStep(ctx, otherID, b, p12); err != nil {
		return err
	}
	if err := r.legacyWriteStep(ctx, otherID, b, p12, endpointNames(p12)); err != nil {
		return err
	}
	before, err := r.cl.GetApplied(ctx, &pb.GetAppliedRequest{Endpoint: Regional})
	if err != nil {
		return err
	}
	result := fmt.Sprintf("accepted: %s was at generation %d, now %d (LegacyApply checks nothing)", Regional, before.GetGeneration(), p2.GetGeneration())
	if err := a.LegacyWrite(ctx, p2.GetGeneration(), Regional); err != nil {
		result = "refused: " + errorText(err)
	}
	if err := r.record(ctx, delayedID, fmt.Sprintf("delay over: LegacyApply generation %d to %s (its check is %d generations stale)",
		p2.GetGeneration(), Regional, p12.GetGeneration()-p2.GetGeneration()), result); err != nil {
		return err
	}
	if err := r.legacyCleanupStep(ctx, otherID, b); err != nil {
		return err
	}
	// az-a carries on with its pass: the rest of generation 2.
	rest := endpointNames(p2)[1:]
	result = fmt.Sprintf("%d endpoints written", len(rest))
	for _, ep := range rest {
		if err := a.LegacyWrite(ctx, p2.GetGeneration(), ep); err != nil {
			result = fmt.Sprintf("refused at %s: %s; its pass ends there", ep, errorText(err))
			break
		}
	}
	if err := r.record(ctx, delayedID, fmt.Sprintf("LegacyApply generation %d to the other %d endpoints", p2.GetGeneration(), len(rest)), result); err != nil {
		return err
	}

	// 5. A new plan: can the system apply it by itself?
	p13, err := r.submit(ctx)
	if err != nil {
		return err
	}
	if err := r.record(ctx, plannerID, "submit a plan", fmt.Sprintf("generation %d", p13.GetGeneration())); err != nil {
		return err
	}
	if err := r.legacyCheckStep(ctx, otherID, b, p13); err != nil {
		return err
	}
	recovered, how, err := r.recovery(ctx, p13.GetGeneration(), enactors)
	if err != nil {
		return err
	}
	r.report.Recovered = recovered
	return r.record(ctx, delayedID+", "+otherID, "run the legacy enactor loops (dnsplan enactor --legacy)", how)
}

// legacyCheckStep makes e's one-time check of p and records it. A check
// that refuses is recorded, not returned: it is an outcome to show.
func (r *run) legacyCheckStep(ctx context.Context, id string, e *enactor.Enactor, p *pb.Plan) error {
	newest, err := e.LegacyCheck(ctx, p)
	result := fmt.Sprintf("yes (applied: %d)", newest)
	switch {
	case newest == 0 && err == nil:
		result = "yes (nothing applied yet)"
	case errors.Is(err, enactor.ErrLegacyPlanMissing):
		result = fmt.Sprintf("CHECK FAILED: %v; nothing applied", err)
	case err != nil:
		result = "failed: " + errorText(err)
	}
	return r.record(ctx, id, fmt.Sprintf("one-time check: is generation %d newer than what is applied?", p.GetGeneration()), result)
}

// legacyWriteStep writes p to endpoints one by one, as a legacy pass does,
// and records the whole as one step.
func (r *run) legacyWriteStep(ctx context.Context, id string, e *enactor.Enactor, p *pb.Plan, endpoints []string) error {
	result := fmt.Sprintf("%d endpoints written", len(endpoints))
	for _, ep := range endpoints {
		if err := e.LegacyWrite(ctx, p.GetGeneration(), ep); err != nil {
			result = fmt.Sprintf("refused at %s: %s", ep, errorText(err))
			break
		}
	}
	return r.record(ctx, id, fmt.Sprintf("LegacyApply generation %d to each endpoint, one by one", p.GetGeneration()), result)
}

// legacyCleanupStep runs e's age-based clean-up and records it.
func (r *run) legacyCleanupStep(ctx context.Context, id string, e *enactor.Enactor) error {
	deleted, err := e.LegacyCleanup(ctx)
	var result string
	if err != nil {
		result = "failed: " + errorText(err)
	} else {
		result, err = r.describeDeleted(ctx, deleted)
		if err != nil {
			return err
		}
	}
	return r.record(ctx, id, fmt.Sprintf("LegacyCleanup: delete plans more than %d generations older than the newest", keepGenerations), result)
}

// endpointNames lists p's endpoints in the plan's order.
func endpointNames(p *pb.Plan) []string {
	names := make([]string, 0, len(p.GetEndpoints()))
	for _, ep := range p.GetEndpoints() {
		names = append(names, ep.GetName())
	}
	return names
}
