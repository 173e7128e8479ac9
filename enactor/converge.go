package enactor

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Read-back polling: quick at first (a healthy cluster converges in a few
// milliseconds), then backing off so a node that is down costs little.
const (
	readBackFirst = 10 * time.Millisecond
	readBackLimit = 500 * time.Millisecond
	// readBackLast bounds the fresh round of read-back at the converge
	// timeout, before anything is reported: what was lagging before a
	// pause of this enactor's own is not what the nodes serve now.
	readBackLast = 2 * time.Second
)

// readBackSampleSize bounds the endpoints read back per member after an
// apply (readBackSample).
const readBackSampleSize = 8

// readBackSample picks the endpoints of an answered apply to read back:
// at most readBackSampleSize of those the apply's own command wrote
// (answered APPLIED), those whose records changed from prev (the plan
// the holding applied before; nil: none) first; if it wrote none, the
// first endpoint serving the generation. One endpoint the command wrote
// is proof enough: a command is applied whole, in log order, so a member
// serving the generation on it (or a newer one, set by a later command)
// has applied all of it. Endpoints answered STALE at the generation were
// written by an earlier command (a previous holder's, before it lost the
// lease half-way), and prove only that one. Reading back every endpoint
// would cost a call per member and endpoint: 300,000 for a plan of
// 100,000 endpoints that changed one target. The changed ones are
// preferred because a person reading a report of lagging nodes wants to
// see what the nodes were to serve.
//
// One case is not told apart: a retry of the same request under the same
// token, whose first attempt committed though its answer was lost (the
// client retries UNAVAILABLE), answers APPLIED for what the first attempt
// wrote, and a sample of those proves the first attempt only. Only the
// endpoints the first attempt refused and the retry wrote, moments
// later, are then not proven.
func readBackSample(req *pb.ApplyPlanRequest, resp *pb.ApplyPlanResponse, plan, prev *pb.Plan) []string {
	was := make(map[string]*pb.EndpointPlan, len(prev.GetEndpoints()))
	for _, ep := range prev.GetEndpoints() {
		was[contract.CanonicalName(ep.GetName())] = ep
	}
	now := make(map[string]*pb.EndpointPlan, len(plan.GetEndpoints()))
	for _, ep := range plan.GetEndpoints() {
		now[contract.CanonicalName(ep.GetName())] = ep
	}
	var changed, unchanged, served []string
	for _, r := range resp.GetResults() {
		name := r.GetEndpoint()
		switch {
		case r.GetOutcome() != pb.Outcome_OUTCOME_APPLIED:
			if serves(req, r) && len(served) == 0 {
				served = append(served, name)
			}
		case now[name] == nil || !proto.Equal(now[name], was[name]):
			changed = append(changed, name)
		case len(unchanged) < readBackSampleSize:
			unchanged = append(unchanged, name)
		}
	}
	sample := changed
	switch {
	case len(sample) == 0:
		sample = unchanged
	case len(sample) > readBackSampleSize:
		sample = sample[:readBackSampleSize]
	}
	if len(sample) == 0 {
		sample = served
	}
	return sample
}

// convergeJob is one answered apply to read back.
type convergeJob struct {
	generation uint64
	endpoints  []string // a sample of the apply's endpoints (readBackSample); may be empty
	sent       time.Time
}

// verifier reads back, after each apply, what every node serves, then runs
// the plan clean-up. It works through its jobs one at a time; if applies
// come faster, only the newest waiting job is kept: a node serving a newer
// generation also serves "this generation or newer".
type verifier struct {
	s     *shard
	lease *pb.Lease // the holding's lease, which fences its reports
	log   *slog.Logger

	// mu guards pending, the job waiting to be read back.
	mu      sync.Mutex
	pending *convergeJob
	// wake gets a token (never blocking) when pending is set.
	wake chan struct{}
}

func newVerifier(s *shard, lease *pb.Lease, log *slog.Logger) *verifier {
	return &verifier{s: s, lease: lease, log: log, wake: make(chan struct{}, 1)}
}

// submit queues a job, replacing one still waiting.
func (v *verifier) submit(j convergeJob) {
	v.mu.Lock()
	v.pending = &j
	v.mu.Unlock()
	select {
	case v.wake <- struct{}{}:
	default:
	}
}

// run works through submitted jobs until ctx ends.
func (v *verifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-v.wake:
		}
		v.mu.Lock()
		j := v.pending
		v.pending = nil
		v.mu.Unlock()
		if j == nil {
			continue
		}
		if len(j.endpoints) > 0 {
			v.converge(ctx, *j)
		}
		v.cleanup(ctx)
	}
}

// converge reads j back (readBackFor) until --converge-timeout after the
// apply was sent. Running out is a warning and a counter; and, when
// members answered an older generation, a report of doubt (ReportDoubt)
// naming them: if they are a majority, that is no slow node but a cluster
// not serving what it committed, and the cluster freezes.
func (v *verifier) converge(ctx context.Context, j convergeJob) {
	m := v.s.e.metrics
	rb := newReadBack(j)
	if v.readBackUntil(ctx, rb, j.sent.Add(v.s.e.cfg.ConvergeTimeout)) {
		took := time.Since(j.sent)
		m.convergence.Observe(took.Seconds())
		v.log.Info("every node serves the plan", "generation", j.generation,
			"endpoints", len(j.endpoints), "convergence", took.Round(time.Millisecond))
		return
	}
	if ctx.Err() != nil {
		return // the holding ended; that is not the cluster failing to converge
	}
	m.convergeTimeouts.Inc()
	v.log.Warn("not every node serves the plan within the converge timeout", "generation", j.generation,
		"timeout", v.s.e.cfg.ConvergeTimeout, "lagging", rb.lagging)
	if v.readBackUntil(ctx, rb, time.Now().Add(readBackLast)) || len(rb.older) == 0 {
		return
	}
	v.report(ctx, &pb.ReportDoubtRequest{
		Kind:       pb.DoubtKind_DOUBT_KIND_READ_BACK,
		Generation: j.generation,
		Nodes:      rb.olderNodes(),
		Endpoints:  firstN(j.endpoints, contract.MaxDoubtEndpoints),
		Detail:     fmt.Sprintf("not served after %s: %s", v.s.e.cfg.ConvergeTimeout, strings.Join(firstN(rb.lagging, 8), "; ")),
	})
}

// reportAnswer is what the cluster answered a report of doubt.
type reportAnswer int

const (
	reportNoted  reportAnswer = iota // taken; the cluster is not frozen
	reportFrozen                     // the cluster is frozen after it
	reportFenced                     // refused: this holding's token is superseded
	reportFailed                     // not answered, or refused for another reason
)

// report sends a report of doubt under the holding's lease. The cluster
// judges it; an enactor only logs what it answered.
func (v *verifier) report(ctx context.Context, r *pb.ReportDoubtRequest) reportAnswer {
	r.LeaseName, r.LeaseToken, r.EnactorId = v.s.lease, v.lease.GetToken(), v.s.e.cfg.ID
	if len(r.Detail) > contract.MaxReasonLength {
		// Cut on a character: a detail that is not UTF-8 cannot be sent.
		r.Detail = strings.ToValidUTF8(r.Detail[:contract.MaxReasonLength-3], "")
	}
	resp, err := v.s.e.applier.ReportDoubt(ctx, r)
	kind := strings.ToLower(strings.TrimPrefix(r.GetKind().String(), "DOUBT_KIND_"))
	switch {
	case err != nil && client.Reason(err) == contract.ReasonFenced:
		v.s.e.metrics.doubtReports.WithLabelValues(kind, "fenced").Inc()
		v.log.Warn("report of doubt fenced: the lease has moved on", "kind", kind, "generation", r.GetGeneration())
		return reportFenced
	case err != nil:
		v.s.e.metrics.doubtReports.WithLabelValues(kind, "error").Inc()
		v.log.Error("reporting doubt to the cluster failed", "kind", kind, "generation", r.GetGeneration(), "err", err)
		return reportFailed
	case resp.GetFrozen():
		v.s.e.metrics.doubtReports.WithLabelValues(kind, "frozen").Inc()
		v.log.Error("reported doubt; the cluster is frozen", "kind", kind, "generation", r.GetGeneration(), "reason", resp.GetReason())
		return reportFrozen
	}
	v.s.e.metrics.doubtReports.WithLabelValues(kind, "noted").Inc()
	v.log.Warn("reported doubt; the cluster did not freeze (below its threshold)", "kind", kind,
		"generation", r.GetGeneration(), "nodes", r.GetNodes())
	return reportNoted
}

func firstN(s []string, n int) []string { return s[:min(len(s), n)] }

// readBack is the progress of reading one apply back: what every member
// serves, endpoint by endpoint.
type readBack struct {
	j convergeJob
	// mu guards confirmed, which the members' reads of a round write.
	mu        sync.Mutex
	confirmed map[string]bool // node gRPC address + " " + endpoint
	// The last round's: the members read back (with a gRPC address),
	// descriptions of what was not confirmed, the members that answered
	// an older generation (evidence that they do not serve the apply),
	// and those that did not answer in time (evidence of nothing: a node
	// down or cut off from this enactor, or this enactor's own network).
	members   int
	lagging   []string
	older     map[string]bool
	unreached map[string]bool
}

func newReadBack(j convergeJob) *readBack {
	return &readBack{j: j, confirmed: map[string]bool{}}
}

func (rb *readBack) olderNodes() []string {
	return firstN(slices.Sorted(maps.Keys(rb.older)), contract.MaxDoubtNodes)
}

// readBackUntil polls every member's own replica (a stale read on that
// node, what its DNS answers from) until each serves rb's generation or
// newer for every endpoint it applied, or until the deadline; it reports
// whether they all did.
func (v *verifier) readBackUntil(ctx context.Context, rb *readBack, deadline time.Time) bool {
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	poll := retry.Backoff{First: readBackFirst, Limit: readBackLimit}
	for {
		// The gate waits on the lease's context, not the deadline's: a
		// paused enactor does nothing, not even time out.
		if v.s.e.gate.wait(ctx) != nil {
			return false
		}
		if rctx.Err() != nil {
			return false
		}
		if v.readBackRound(rctx, rb) {
			return true
		}
		if retry.Sleep(rctx, poll.Pause()) != nil {
			return false
		}
	}
}

// readBackRound does one round of read-back and reports whether every
// member now serves rb's apply; if not, rb says which did not yet. The
// members are read side by side, so one that does not answer (paused,
// black-holed) costs the others nothing; each member's endpoints one
// after another.
func (v *verifier) readBackRound(ctx context.Context, rb *readBack) bool {
	j := rb.j
	st, err := v.s.e.reader.Status(ctx)
	if err != nil {
		// Membership unknown: nothing is known about any member.
		rb.lagging, rb.older, rb.unreached = []string{fmt.Sprintf("(membership unknown: %s)", status.Code(err))}, nil, nil
		return false
	}
	var (
		mu        sync.Mutex // guards the three below
		lagging   []string
		older     = map[string]bool{}
		unreached = map[string]bool{}
		wg        sync.WaitGroup
	)
	members := 0
	for _, mem := range st.GetMembers() {
		addr, id := mem.GetGrpcAddr(), mem.GetId()
		if addr == "" {
			// A member that has not registered its gRPC address yet cannot
			// be read back; it is reported, not waited for.
			v.log.Debug("member has no gRPC address; not read back", "member", id)
			continue
		}
		members++
		wg.Go(func() {
			for _, ep := range j.endpoints {
				key := addr + " " + ep
				rb.mu.Lock()
				done := rb.confirmed[key]
				rb.mu.Unlock()
				if done {
					continue
				}
				a, err := v.s.e.reader.GetAppliedOf(ctx, addr, ep)
				mu.Lock()
				switch {
				case err == nil && a.GetGeneration() >= j.generation:
					rb.mu.Lock()
					rb.confirmed[key] = true
					rb.mu.Unlock()
				case err == nil:
					lagging = append(lagging, fmt.Sprintf("%s %s serves %d", id, ep, a.GetGeneration()))
					older[id] = true
				case status.Code(err) == codes.NotFound:
					// Nothing applied on that node: it answered, and serves
					// nothing of this apply.
					lagging = append(lagging, fmt.Sprintf("%s %s serves nothing", id, ep))
					older[id] = true
				default:
					lagging = append(lagging, fmt.Sprintf("%s %s: %s", id, ep, status.Code(err)))
					unreached[id] = true
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sort.Strings(lagging)
	rb.members, rb.lagging, rb.older, rb.unreached = members, lagging, older, unreached
	return len(lagging) == 0
}

// cleanup asks the cluster to delete old plans. The cluster keeps the
// newest KeepLast and every applied plan (I3), so this is safe at any
// time; a failure is retried after the next apply.
func (v *verifier) cleanup(ctx context.Context) {
	if v.s.e.gate.wait(ctx) != nil {
		return
	}
	m := v.s.e.metrics
	resp, err := v.s.e.applier.CleanupPlans(ctx, &pb.CleanupPlansRequest{KeepLast: uint32(v.s.e.cfg.KeepLast)})
	switch {
	case err == nil:
		m.cleanups.WithLabelValues("ok").Inc()
		m.plansDeleted.Add(float64(len(resp.GetDeleted())))
		if len(resp.GetDeleted()) > 0 {
			v.log.Info("old plans deleted", "deleted", resp.GetDeleted(), "keep_last", v.s.e.cfg.KeepLast)
		}
	case ctx.Err() != nil:
	case status.Code(err) == codes.FailedPrecondition:
		m.cleanups.WithLabelValues("refused").Inc()
		v.log.Info("clean-up refused", "err", status.Convert(err).Message())
	default:
		m.cleanups.WithLabelValues("error").Inc()
		v.log.Warn("clean-up failed", "err", err)
	}
}
