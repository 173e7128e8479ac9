package scenario

import (
	"context"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/enactor"
	"github.com/dnsplan/dnsplan/internal/poll"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// fixed replays the interleaving against the fixed design. The script
// makes the enactors' calls itself (AcquireLease, ApplyPlan, CleanupPlans,
// ReleaseLease, through the client an enactor uses), because the race
// needs az-a to send, after a long pause, exactly the request it had built
// before it: generation 2 with the token it held then. At the end the real
// enactor loops run on a new plan.
func (r *run) fixed(ctx context.Context) error {
	lease := enactor.LeaseName(0)
	aCl, closeA, err := r.actorClient(delayedID)
	if err != nil {
		return err
	}
	defer closeA()
	bCl, closeB, err := r.actorClient(otherID)
	if err != nil {
		return err
	}
	defer closeB()

	// 1. The planner makes generation 1; az-b applies it everywhere.
	p1, err := r.submit(ctx)
	if err != nil {
		return err
	}
	if err := r.record(ctx, plannerID, "submit a plan for 4 endpoints", fmt.Sprintf("stored as generation %d", p1.GetGeneration())); err != nil {
		return err
	}
	bLease, waited, err := r.acquire(ctx, bCl, lease, otherID)
	if err != nil {
		return err
	}
	if err := r.record(ctx, otherID, "AcquireLease "+lease, tokenResult(bLease, waited)); err != nil {
		return err
	}
	if err := r.applyStep(ctx, bCl, otherID, "", p1.GetGeneration(), bLease.GetToken()); err != nil {
		return err
	}
	if err := r.cleanupStep(ctx, bCl, otherID); err != nil {
		return err
	}
	if err := r.release(ctx, bCl, bLease, otherID); err != nil {
		return err
	}

	// 2. Generation 2; az-a takes the lease, builds its apply of
	// generation 2 with its token, and is paused before sending it. Its
	// renewals stop with it, so its lease expires.
	p2, err := r.submit(ctx)
	if err != nil {
		return err
	}
	if err := r.record(ctx, plannerID, "submit a plan", fmt.Sprintf("generation %d", p2.GetGeneration())); err != nil {
		return err
	}
	aLease, waited, err := r.acquire(ctx, aCl, lease, delayedID)
	if err != nil {
		return err
	}
	late := &pb.ApplyPlanRequest{Generation: p2.GetGeneration(), LeaseName: lease, LeaseToken: aLease.GetToken(), EnactorId: delayedID}
	if err := r.record(ctx, delayedID, "AcquireLease "+lease+"; build ApplyPlan of generation "+fmt.Sprint(p2.GetGeneration()),
		tokenResult(aLease, waited)+"; then paused before sending it (its renewals stop too)"); err != nil {
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

	// 4. az-b takes the lease once az-a's has expired, and applies the
	// newest plan to every endpoint.
	bLease, waited, err = r.acquire(ctx, bCl, lease, otherID)
	if err != nil {
		return err
	}
	if err := r.record(ctx, otherID, "AcquireLease "+lease+" (held by the paused az-a until it expires)", tokenResult(bLease, waited)); err != nil {
		return err
	}
	if err := r.applyStep(ctx, bCl, otherID, "", p12.GetGeneration(), bLease.GetToken()); err != nil {
		return err
	}

	// 5. az-a resumes and sends what it had decided before the pause.
	if r.opts.unfenced {
		// The checker's own test: the same late write, but through the
		// legacy RPC, which checks neither token nor generation.
		result := "accepted"
		if _, err := aCl.LegacyApply(ctx, &pb.LegacyApplyRequest{Generation: late.GetGeneration(), Endpoint: Regional, EnactorId: delayedID}); err != nil {
			result = "refused: " + errorText(err)
		}
		if err := r.record(ctx, delayedID, fmt.Sprintf("resumed: write generation %d to %s, FENCE BYPASSED (LegacyApply)", late.GetGeneration(), Regional), result); err != nil {
			return err
		}
	} else {
		_, err := aCl.ApplyPlan(ctx, late)
		result := "accepted (the fence failed)"
		if err != nil {
			result = "refused, " + errorText(err)
		}
		if err := r.record(ctx, delayedID, fmt.Sprintf("resumed: send ApplyPlan generation %d with its old token %d", late.GetGeneration(), late.GetLeaseToken()), result); err != nil {
			return err
		}
	}
	// Even an enactor that holds the lease rightly cannot write an old
	// plan: the generation is checked in the same step as the write. az-b
	// lets the lease go so that az-a can have it.
	if err := r.release(ctx, bCl, bLease, otherID); err != nil {
		return err
	}
	aLease, _, err = r.acquire(ctx, aCl, lease, delayedID)
	if err != nil {
		return err
	}
	if err := r.applyStep(ctx, aCl, delayedID, "AcquireLease again (az-b released it): a fresh, valid token; ",
		p2.GetGeneration(), aLease.GetToken()); err != nil {
		return err
	}
	if err := r.release(ctx, aCl, aLease, delayedID); err != nil {
		return err
	}
	// az-b's clean-up.
	if r.opts.unfenced {
		resp, err := bCl.LegacyCleanup(ctx, &pb.LegacyCleanupRequest{KeepGenerations: keepGenerations})
		if err != nil {
			return fmt.Errorf("%s: legacy clean-up: %w", otherID, err)
		}
		result, err := r.describeDeleted(ctx, resp.GetDeleted())
		if err != nil {
			return err
		}
		if err := r.record(ctx, otherID, fmt.Sprintf("clean-up, RULE BYPASSED (LegacyCleanup keep %d generations)", keepGenerations), result); err != nil {
			return err
		}
	} else if err := r.cleanupStep(ctx, bCl, otherID); err != nil {
		return err
	}

	// 6. A new plan: the enactor loops apply it by themselves.
	p13, err := r.submit(ctx)
	if err != nil {
		return err
	}
	if err := r.record(ctx, plannerID, "submit a plan", fmt.Sprintf("generation %d", p13.GetGeneration())); err != nil {
		return err
	}
	var loops []*loop
	for _, pair := range []struct {
		id string
		cl *client.Client
	}{{delayedID, aCl}, {otherID, bCl}} {
		l, err := r.newEnactor(pair.id, false, pair.cl)
		if err != nil {
			return err
		}
		loops = append(loops, l)
	}
	recovered, how, err := r.recovery(ctx, p13.GetGeneration(), loops)
	if err != nil {
		return err
	}
	r.report.Recovered = recovered
	return r.record(ctx, delayedID+", "+otherID, "run the enactor loops (dnsplan enactor)", how)
}

// acquire takes the lease for holder, retrying while another holds it (an
// expired lease is free), within the step timeout; waited is how long that
// took.
func (r *run) acquire(ctx context.Context, cl *client.Client, name, holder string) (l *pb.Lease, waited time.Duration, err error) {
	began := time.Now()
	var last error
	werr := poll.Until(ctx, r.opts.StepTimeout, holder+" to acquire "+name, func() bool {
		l, last = cl.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: name, Holder: holder, Ttl: durationpb.New(leaseTTL)})
		return last == nil || status.Code(last) != codes.FailedPrecondition
	})
	switch {
	case werr != nil:
		return nil, 0, fmt.Errorf("%w (last: %v)", werr, last)
	case last != nil:
		return nil, 0, fmt.Errorf("%s: acquire %s: %w", holder, name, last)
	}
	return l, time.Since(began), nil
}

func tokenResult(l *pb.Lease, waited time.Duration) string {
	s := fmt.Sprintf("token %d", l.GetToken())
	if waited > 100*time.Millisecond {
		s += fmt.Sprintf(", granted after %s of waiting", waited.Round(10*time.Millisecond))
	}
	return s
}

// applyStep sends ApplyPlan for every endpoint of generation under token,
// and records the cluster's answer, per endpoint; before prefixes the
// action's description.
func (r *run) applyStep(ctx context.Context, cl *client.Client, id, before string, generation, token uint64) error {
	resp, err := cl.ApplyPlan(ctx, &pb.ApplyPlanRequest{Generation: generation, LeaseName: enactor.LeaseName(0), LeaseToken: token, EnactorId: id})
	var result string
	if err != nil {
		result = "refused, " + errorText(err)
	} else {
		var applied, stale []string
		for _, res := range resp.GetResults() {
			if res.GetOutcome() == pb.Outcome_OUTCOME_APPLIED {
				applied = append(applied, res.GetEndpoint())
			} else {
				stale = append(stale, fmt.Sprintf("%s (serves %d)", res.GetEndpoint(), res.GetAppliedGeneration()))
			}
		}
		switch {
		case len(stale) == 0:
			result = fmt.Sprintf("APPLIED to all %d endpoints in one step", len(applied))
		case len(applied) == 0:
			result = fmt.Sprintf("OUTCOME_STALE for all %d endpoints, nothing written: %s", len(stale), strings.Join(stale, ", "))
		default:
			result = fmt.Sprintf("applied to %d, STALE for %s", len(applied), strings.Join(stale, ", "))
		}
	}
	return r.record(ctx, id, fmt.Sprintf("%sApplyPlan generation %d with token %d", before, generation, token), result)
}

// cleanupStep runs the fixed clean-up and records it.
func (r *run) cleanupStep(ctx context.Context, cl *client.Client, id string) error {
	resp, err := cl.CleanupPlans(ctx, &pb.CleanupPlansRequest{KeepLast: keepGenerations})
	var result string
	if err != nil {
		result = "failed: " + errorText(err)
	} else if result, err = r.describeDeleted(ctx, resp.GetDeleted()); err != nil {
		return err
	}
	return r.record(ctx, id, fmt.Sprintf("CleanupPlans keep_last %d (and every applied plan)", keepGenerations), result)
}

// release gives the lease up; no event, it changes nothing DNS serves.
func (r *run) release(ctx context.Context, cl *client.Client, l *pb.Lease, holder string) error {
	_, err := cl.ReleaseLease(ctx, &pb.ReleaseLeaseRequest{Name: l.GetName(), Holder: holder, Token: l.GetToken()})
	if err != nil {
		return fmt.Errorf("%s: release %s: %w", holder, l.GetName(), err)
	}
	return nil
}
