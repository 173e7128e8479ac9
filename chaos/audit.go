package chaos

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster/fsm"
	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// AuditEvent is one event of the cluster's audit history, as merged from
// the fetches.
type AuditEvent struct {
	Index uint64 `json:"index"`
	// At is the event's state-machine time (the leader's clock when it
	// proposed the command), in nanoseconds since the run started.
	At int64 `json:"at"`
	// Seen is run time, in nanoseconds since the run started, of the
	// fetch that first returned the event: a bound after the event that
	// clock skew cannot move, the anchor for reporting it on the run's
	// timeline.
	Seen       int64             `json:"seen"`
	Kind       pb.HistoryKind    `json:"-"`
	Actor      string            `json:"actor,omitempty"`
	Generation uint64            `json:"generation,omitempty"`
	Endpoint   string            `json:"endpoint,omitempty"`
	LeaseName  string            `json:"lease,omitempty"`
	Token      uint64            `json:"token,omitempty"`
	Outcome    pb.HistoryOutcome `json:"-"`
	// ReasonCode is the contract reason of a rejection or refusal.
	ReasonCode contract.Reason `json:"reason_code,omitempty"`
	Reason     string          `json:"reason,omitempty"`
	// Gap marks the first event after a stretch the fetches may have
	// missed (the cluster keeps only the newest events).
	Gap bool `json:"gap,omitempty"`
}

// MarshalJSON writes the kind and outcome as their words.
func (e AuditEvent) MarshalJSON() ([]byte, error) {
	type plain AuditEvent
	return json.Marshal(struct {
		plain
		Kind    string `json:"kind"`
		Outcome string `json:"outcome"`
	}{plain(e), contract.KindName(e.Kind), contract.OutcomeName(e.Outcome)})
}

func (e AuditEvent) String() string {
	s := fmt.Sprintf("index %d: %s by %q", e.Index, contract.KindName(e.Kind), e.Actor)
	if e.Generation != 0 {
		s += fmt.Sprintf(" generation %d", e.Generation)
	}
	if e.Endpoint != "" {
		s += " " + e.Endpoint
	}
	if e.LeaseName != "" {
		s += fmt.Sprintf(" lease %s token %d", e.LeaseName, e.Token)
	}
	s += ": " + contract.OutcomeName(e.Outcome)
	if e.Reason != "" {
		s += " (" + e.Reason + ")"
	}
	return s
}

// The kinds and outcomes the checks read.
const (
	kindSubmit        = pb.HistoryKind_HISTORY_KIND_SUBMIT
	kindAcquire       = pb.HistoryKind_HISTORY_KIND_ACQUIRE
	kindRelease       = pb.HistoryKind_HISTORY_KIND_RELEASE
	kindApply         = pb.HistoryKind_HISTORY_KIND_APPLY
	kindCleanup       = pb.HistoryKind_HISTORY_KIND_CLEANUP
	kindLegacyApply   = pb.HistoryKind_HISTORY_KIND_LEGACY_APPLY
	kindLegacyCleanup = pb.HistoryKind_HISTORY_KIND_LEGACY_CLEANUP

	outcomeAccepted = pb.HistoryOutcome_HISTORY_OUTCOME_ACCEPTED
	outcomeApplied  = pb.HistoryOutcome_HISTORY_OUTCOME_APPLIED
	outcomeStale    = pb.HistoryOutcome_HISTORY_OUTCOME_STALE
	outcomeDeleted  = pb.HistoryOutcome_HISTORY_OUTCOME_DELETED
)

// auditLog merges the bounded audit history fetched again and again into
// one history, by index. One command may record several events under its
// index (an apply records one per endpoint), so an event is known by its
// index, kind, endpoint and outcome.
type auditLog struct {
	// mu guards everything below: the fetch loop and the final fetch
	// write, the checks read.
	mu     sync.Mutex
	events []AuditEvent
	seen   map[string]bool
	newest uint64
	gaps   int
}

func newAuditLog() *auditLog { return &auditLog{seen: map[string]bool{}} }

// fetch reads the cluster's history once (linearizably, on the leader)
// and merges what is new.
func (a *auditLog) fetch(ctx context.Context, c *client.Client, rec *recorder) error {
	resp, err := c.ListHistory(ctx, &pb.ListHistoryRequest{})
	if err != nil {
		return err
	}
	a.merge(resp.GetEvents(), rec)
	return nil
}

func (a *auditLog) merge(events []*pb.HistoryEvent, rec *recorder) {
	a.mu.Lock()
	defer a.mu.Unlock()
	// The cluster keeps the newest fsm.HistoryLimit events; a full answer
	// whose oldest event is newer than everything merged may have lost
	// events in between.
	gap := len(events) >= fsm.HistoryLimit && len(a.events) > 0 && events[0].GetIndex() > a.newest
	for _, e := range events {
		key := fmt.Sprintf("%d|%d|%s|%d", e.GetIndex(), e.GetKindCode(), e.GetEndpoint(), e.GetOutcomeCode())
		if a.seen[key] {
			continue
		}
		a.seen[key] = true
		ev := AuditEvent{
			Index: e.GetIndex(), Kind: e.GetKindCode(), Actor: e.GetActor(), Generation: e.GetGeneration(),
			Endpoint: e.GetEndpoint(), LeaseName: e.GetLeaseName(), Token: e.GetToken(),
			Outcome: e.GetOutcomeCode(), ReasonCode: contract.Reason(e.GetReasonCode()), Reason: e.GetReason(), Gap: gap,
		}
		if rec != nil {
			ev.At = int64(e.GetTime().AsTime().Sub(rec.start))
			ev.Seen = rec.now()
		}
		if gap {
			a.gaps++
			if rec != nil {
				rec.event(Event{Kind: "audit-gap", Detail: fmt.Sprintf("events between index %d and %d may be missing", a.newest, ev.Index)})
			}
			gap = false
		}
		a.events = append(a.events, ev)
		a.newest = max(a.newest, ev.Index)
	}
}

// sorted returns the merged history ordered by index (events of one index
// keep the order the cluster recorded them in).
func (a *auditLog) sorted() []AuditEvent {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := slices.Clone(a.events)
	slices.SortStableFunc(out, func(x, y AuditEvent) int { return cmp.Compare(x.Index, y.Index) })
	return out
}

// checkFencing is I4 on the audit history: every apply the cluster
// accepted (outcome applied or stale) carried the current token of its
// lease, held by the enactor that sent it. The current token is rebuilt
// from the acquire events (a token is the index of the acquire that
// granted it) and the releases; after a gap in the history a lease is
// unknown until it is acquired again, and its applies are not judged.
// Lease expiry is not judged: renewals are not in the history.
func checkFencing(events []AuditEvent) (violations []Violation, judged int) {
	type lease struct {
		token  uint64
		holder string
		known  bool
	}
	leases := map[string]*lease{}
	for _, e := range events {
		if e.Gap {
			for _, l := range leases {
				l.known = false
			}
		}
		switch e.Kind {
		case kindAcquire:
			if e.Outcome == outcomeAccepted {
				leases[e.LeaseName] = &lease{token: e.Token, holder: e.Actor, known: true}
			}
		case kindRelease:
			if l := leases[e.LeaseName]; e.Outcome == outcomeAccepted && l != nil && l.token == e.Token {
				leases[e.LeaseName] = &lease{known: l.known}
			}
		case kindApply:
			if e.Outcome != outcomeApplied && e.Outcome != outcomeStale {
				continue
			}
			l := leases[e.LeaseName]
			if l == nil {
				// Never acquired in the history: either a gap hid it (then
				// every lease is unknown anyway) or nothing granted it.
				if !gapBefore(events, e.Index) {
					violations = append(violations, Violation{Invariant: "I4", Source: "audit", Endpoint: e.Endpoint,
						Detail: fmt.Sprintf("accepted without any grant of lease %q: %s", e.LeaseName, e)})
				}
				continue
			}
			if !l.known {
				continue
			}
			judged++
			switch {
			case l.token == 0:
				violations = append(violations, Violation{Invariant: "I4", Source: "audit", Endpoint: e.Endpoint,
					Detail: fmt.Sprintf("accepted while lease %q was released: %s", e.LeaseName, e)})
			case e.Token != l.token:
				violations = append(violations, Violation{Invariant: "I4", Source: "audit", Endpoint: e.Endpoint,
					Detail: fmt.Sprintf("accepted with token %d while the current token of lease %q was %d: %s", e.Token, e.LeaseName, l.token, e)})
			case e.Actor != l.holder:
				violations = append(violations, Violation{Invariant: "I4", Source: "audit", Endpoint: e.Endpoint,
					Detail: fmt.Sprintf("accepted from %q while %q held lease %q: %s", e.Actor, l.holder, e.LeaseName, e)})
			}
		}
	}
	return violations, judged
}

// checkHeld is D1 on the audit history: no endpoint was made to serve a
// plan the cluster stored held on doubt, by an apply or a legacy apply.
func checkHeld(events []AuditEvent, held map[uint64]bool) []Violation {
	var out []Violation
	for _, e := range events {
		if (e.Kind == kindApply || e.Kind == kindLegacyApply) && e.Outcome == outcomeApplied && held[e.Generation] {
			out = append(out, Violation{Invariant: "D1", Source: "audit", Endpoint: e.Endpoint, At: e.Seen,
				Detail: fmt.Sprintf("generation %d, held on doubt, was applied: %s", e.Generation, e)})
		}
	}
	return out
}

func gapBefore(events []AuditEvent, index uint64) bool {
	for _, e := range events {
		if e.Index > index {
			return false
		}
		if e.Gap {
			return true
		}
	}
	return false
}

// checkPlansKept is I5 for plans: every plan whose SubmitPlan was
// acknowledged is still stored at the end, unless the audit history shows
// a clean-up that deleted plans after it was stored. (Whether that
// clean-up may delete it is I3's question, checked on every replica.)
func checkPlansKept(acked map[uint64]int64, stored map[uint64]bool, events []AuditEvent) []Violation {
	submitted := map[uint64]uint64{} // generation → index of its submit
	var cleanups []uint64            // indexes of clean-ups that deleted something
	for _, e := range events {
		switch {
		case e.Kind == kindSubmit && e.Outcome == outcomeAccepted:
			submitted[e.Generation] = e.Index
		case (e.Kind == kindCleanup || e.Kind == kindLegacyCleanup) && e.Outcome == outcomeDeleted:
			cleanups = append(cleanups, e.Index)
		}
	}
	var out []Violation
	for _, g := range slices.Sorted(maps.Keys(acked)) {
		if stored[g] {
			continue
		}
		after := submitted[g] // 0 if the submit fell in a gap: any clean-up will do
		if slices.ContainsFunc(cleanups, func(i uint64) bool { return i > after }) {
			continue
		}
		out = append(out, Violation{Invariant: "I5", Source: "final", At: acked[g],
			Detail: fmt.Sprintf("plan %d was acknowledged but is not stored at the end, and no recorded clean-up deleted plans after it was stored", g)})
	}
	return out
}
