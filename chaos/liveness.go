package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
)

// Liveness bounds.
const (
	// statusBound is how long a running node may take to answer Status:
	// far more than it needs (milliseconds), so only a node that hangs
	// (its state machine stuck behind a lock, say) misses it; short
	// enough that a hang a stalled reader causes within a few lease TTLs
	// is seen.
	statusBound = 2 * time.Second
	statusEvery = 250 * time.Millisecond
	// l2Margin is the L2 bound's allowance, beyond the lease TTL and a
	// renewal interval, for an election, the new holder's first apply and
	// the read or DNS answer that shows it.
	l2Margin = 2 * time.Second
)

// l2Bound is the L2 bound: a standby takes over a lease within one TTL
// plus a renewal interval (its pause between tries); l2Margin more shows
// the plan applied.
func l2Bound(ttl time.Duration) time.Duration { return ttl + ttl/3 + l2Margin }

// statusCheck asks every running node for its Status, each node on its
// own, again and again: a node that gives no answer within statusBound
// while it runs hangs (L3: no client, however slow, can stop a node's
// state machine). A refused or failed call is not a hang.
type statusCheck struct {
	r *run
	c *client.Client
	// mu guards hung, the nodes whose hang is reported and not over.
	mu   sync.Mutex
	hung map[int]bool
}

func newStatusCheck(r *run, c *client.Client) *statusCheck {
	return &statusCheck{r: r, c: c, hung: map[int]bool{}}
}

// run checks each node in its own goroutine, so that one hung node does
// not delay the others' checks, until ctx ends.
func (s *statusCheck) run(ctx context.Context) {
	var wg sync.WaitGroup
	started := map[int]bool{}
	for ctx.Err() == nil {
		for i := range s.r.cluster.Slots() {
			if !started[i] {
				started[i] = true
				wg.Go(func() { s.node(ctx, i) })
			}
		}
		sleepCtx(ctx, statusEvery)
	}
	wg.Wait()
}

func (s *statusCheck) node(ctx context.Context, i int) {
	c := s.r.cluster
	for sleepCtx(ctx, statusEvery) {
		n := c.Node(i)
		if n == nil {
			continue
		}
		call := s.r.rec.now()
		_, err := s.c.StatusOf(ctx, c.Addrs(i).GRPC)
		if ctx.Err() != nil {
			return
		}
		if c.Node(i) != n {
			continue // stopped or restarted meanwhile: not this node's answer
		}
		hung := errors.Is(err, context.DeadlineExceeded) || status.Code(err) == codes.DeadlineExceeded
		s.mu.Lock()
		was := s.hung[i]
		s.hung[i] = hung
		s.mu.Unlock()
		if hung && !was {
			s.r.rec.violate(Violation{Invariant: "L3", Source: "status", Node: c.ID(i), At: call,
				Detail: fmt.Sprintf("the node runs but did not answer Status within %s: it hangs", statusBound)})
		}
	}
}

// L2 during a fault: while an enactor is frozen, stops reading its plan
// watch, or watches through a node cut off from the quorum, or a watcher
// stalls a node, the cluster keeps a quorum, so a plan stored one TTL and
// one renewal interval after the fault began must be applied to every
// endpoint within l2Bound of its start, if the fault lasts that long.
var l2Faults = map[string]bool{string(FreezeEnactor): true, string(StallEnactor): true, string(PartitionWatch): true, string(StallWatcher): true}

// checkL2 judges L2 for every fault of l2Faults that lasted past its
// bound.
func checkL2(events []Event, ops []Op, acked map[uint64]int64, refused map[string][]refusal, ttl time.Duration) []Violation {
	var found []Violation
	for i, e := range events {
		if !l2Faults[e.Kind] {
			continue
		}
		// Its heal is the next heal event.
		end := int64(-1)
		for _, h := range events[i+1:] {
			if h.Kind == "heal" {
				end = h.At
				break
			}
		}
		deadline := e.At + int64(l2Bound(ttl))
		if end >= 0 && end < deadline {
			continue // healed before the bound: not judged
		}
		if end < 0 {
			continue // the run ended first
		}
		found = append(found, l2Applied(fmt.Sprintf("%s at %s", e.Kind, fmtNanos(e.At)), deadline-int64(l2Margin), deadline, ops, acked, refused)...)
	}
	return found
}

// newestAcked is the newest generation whose SubmitPlan was acknowledged
// by at.
func newestAcked(acked map[uint64]int64, at int64) (gen uint64, ackedAt int64) {
	for g, t := range acked {
		if t <= at && g > gen {
			gen, ackedAt = g, t
		}
	}
	return gen, ackedAt
}

// l2Applied checks that the newest plan stored by storedBy was applied to
// every endpoint by deadline: an operation that returned by then reports
// it or a newer one, or the cluster refused it for the endpoint (its
// rule, e.g. velocity, not a liveness failure).
func l2Applied(why string, storedBy, deadline int64, ops []Op, acked map[uint64]int64, refused map[string][]refusal) []Violation {
	g, at := newestAcked(acked, storedBy)
	if g == 0 {
		return nil
	}
	var found []Violation
	for _, ep := range endpoints {
		ok := false
		for _, o := range ops {
			if o.Endpoint == ep && o.Known && o.Out >= g && o.Return <= deadline {
				ok = true
				break
			}
		}
		for _, rf := range refused[ep] {
			ok = ok || rf.gen >= g && rf.at <= deadline
		}
		if !ok {
			found = append(found, Violation{Invariant: "L2", Source: "history", Endpoint: ep, At: deadline,
				Detail: fmt.Sprintf("generation %d, stored at %s, was not applied by %s, the L2 bound after %s", g, fmtNanos(at), fmtNanos(deadline), why)})
		}
	}
	return found
}

// checkFinalL2 is L2 after the last fault healed at healed: the newest
// plan stored within a TTL and a renewal interval of it must be applied
// and served by every running member's DNS within l2Bound. It waits for
// the bound, looking at DNS as the probes see it, and returns what is
// missing then; judged is false if ctx ended first.
func (r *run) checkFinalL2(ctx context.Context, healed int64) (found []Violation, judged bool) {
	ttl := r.leaseTTL
	deadline := healed + int64(l2Bound(ttl))
	storedBy := deadline - int64(l2Margin)
	if !sleepCtx(ctx, time.Duration(storedBy-r.rec.now())) {
		return nil, false
	}
	_, _, _, acked := r.rec.snapshot()
	g, at := newestAcked(acked, storedBy)
	if g == 0 {
		return nil, true // no plan to apply
	}
	missing := func() []Violation {
		var found []Violation
		for i := range r.cluster.Slots() {
			if !r.cluster.IsMember(i) || r.cluster.Node(i) == nil {
				continue
			}
			for _, ep := range endpoints {
				a, ok := r.dns.lastAnswer(r.cluster.ID(i), ep)
				if ok && a.gen >= g || r.rec.refusedAt(ep, g, r.rec.now()) {
					continue
				}
				found = append(found, Violation{Invariant: "L2", Source: "dns", Node: r.cluster.ID(i), Endpoint: ep, At: deadline,
					Detail: fmt.Sprintf("generation %d, stored at %s, was not served (last answer: generation %d) by %s, the L2 bound after the last fault healed at %s", g, fmtNanos(at), a.gen, fmtNanos(deadline), fmtNanos(healed))})
			}
		}
		return found
	}
	for {
		ops, _, _, _ := r.rec.snapshot()
		found := append(missing(), l2Applied(fmt.Sprintf("the last fault healed at %s", fmtNanos(healed)), storedBy, deadline, ops, acked, r.rec.refusals())...)
		if len(found) == 0 || r.rec.now() >= deadline {
			return found, true
		}
		if !sleepCtx(ctx, min(probeInterval, time.Duration(deadline-r.rec.now()))) {
			return nil, false
		}
	}
}
