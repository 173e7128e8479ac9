package enactor

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Read-back polling: quick at first (a healthy cluster converges in a few
// milliseconds), then backing off so a node that is down costs little.
const (
	readBackFirst = 10 * time.Millisecond
	readBackLimit = 500 * time.Millisecond
)

// convergeJob is one answered apply to read back.
type convergeJob struct {
	generation uint64
	endpoints  []string // the endpoints the apply changed; may be empty
	sent       time.Time
}

// verifier reads back, after each apply, what every node serves, then runs
// the plan clean-up. It works through its jobs one at a time; if applies
// come faster, only the newest waiting job is kept: a node serving a newer
// generation also serves "this generation or newer".
type verifier struct {
	s   *shard
	log *slog.Logger

	// mu guards pending, the job waiting to be read back.
	mu      sync.Mutex
	pending *convergeJob
	// wake gets a token (never blocking) when pending is set.
	wake chan struct{}
}

func newVerifier(s *shard, log *slog.Logger) *verifier {
	return &verifier{s: s, log: log, wake: make(chan struct{}, 1)}
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

// converge polls every member's own replica (a stale read on that node,
// what its DNS answers from) until each serves j's generation or newer for
// every endpoint j applied, or until --converge-timeout after the apply
// was sent.
func (v *verifier) converge(ctx context.Context, j convergeJob) {
	m := v.s.e.metrics
	deadline := j.sent.Add(v.s.e.cfg.ConvergeTimeout)
	rctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	confirmed := map[string]bool{} // node gRPC address + " " + endpoint
	var lagging []string
	poll := retry.Backoff{First: readBackFirst, Limit: readBackLimit}
	for {
		// The gate waits on the lease's context, not the deadline's: a
		// paused enactor does nothing, not even time out.
		if v.s.e.gate.wait(ctx) != nil {
			return
		}
		if rctx.Err() != nil {
			break
		}
		var done bool
		done, lagging = v.readBack(rctx, j, confirmed)
		if done {
			took := time.Since(j.sent)
			m.convergence.Observe(took.Seconds())
			v.log.Info("every node serves the plan", "generation", j.generation,
				"endpoints", len(j.endpoints), "convergence", took.Round(time.Millisecond))
			return
		}
		if retry.Sleep(rctx, poll.Pause()) != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return // the holding ended; that is not the cluster failing to converge
	}
	m.convergeTimeouts.Inc()
	v.log.Warn("not every node serves the plan within the converge timeout", "generation", j.generation,
		"timeout", v.s.e.cfg.ConvergeTimeout, "lagging", lagging)
}

// readBack does one round of read-back and reports whether every member
// now serves j, or which ones did not yet.
func (v *verifier) readBack(ctx context.Context, j convergeJob, confirmed map[string]bool) (bool, []string) {
	st, err := v.s.e.reader.Status(ctx)
	if err != nil {
		return false, []string{fmt.Sprintf("(membership unknown: %s)", status.Code(err))}
	}
	var lagging []string
	for _, mem := range st.GetMembers() {
		addr := mem.GetGrpcAddr()
		if addr == "" {
			// A member that has not registered its gRPC address yet cannot
			// be read back; it is reported, not waited for.
			v.log.Debug("member has no gRPC address; not read back", "member", mem.GetId())
			continue
		}
		for _, ep := range j.endpoints {
			key := addr + " " + ep
			if confirmed[key] {
				continue
			}
			a, err := v.s.e.reader.GetAppliedOf(ctx, addr, ep)
			switch {
			case err == nil && a.GetGeneration() >= j.generation:
				confirmed[key] = true
			case err == nil:
				lagging = append(lagging, fmt.Sprintf("%s %s serves %d", mem.GetId(), ep, a.GetGeneration()))
			default:
				lagging = append(lagging, fmt.Sprintf("%s %s: %s", mem.GetId(), ep, status.Code(err)))
			}
		}
	}
	sort.Strings(lagging)
	return len(lagging) == 0, lagging
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
