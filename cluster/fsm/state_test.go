package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/dnsplan/dnsplan/contract"
	statev1 "github.com/dnsplan/dnsplan/proto/dnsplan/state/v1"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const (
	api  = "api.dnsplan.test."
	fips = "fips.dnsplan.test."
	v6   = "v6.dnsplan.test."
)

// fingerprint is everything a refused command must leave alone: the whole
// state but the audit history, the time and the last index.
func fingerprint(tb testing.TB, s *State) []byte {
	tb.Helper()
	snap := &statev1.Snapshot{Plans: s.Plans(), Applied: s.AppliedAll(), NextGeneration: s.NextGeneration()}
	snap.Frozen, snap.FreezeReason = s.Frozen()
	for _, l := range s.Leases() {
		snap.Leases = append(snap.Leases, &statev1.StoredLease{Lease: l})
	}
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(snap)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// wantErr checks a result's error against a sentinel (nil for success).
func wantErr(tb testing.TB, what string, r Result, want error) {
	tb.Helper()
	switch {
	case want == nil && r.Err != nil:
		tb.Fatalf("%s: %v, want success", what, r.Err)
	case want != nil && !errors.Is(r.Err, want):
		tb.Fatalf("%s: error %v, want %v", what, r.Err, want)
	}
}

// lastEvent is the newest audit event.
func lastEvent(tb testing.TB, s *State) *pb.HistoryEvent {
	tb.Helper()
	h := s.History(1)
	if len(h) != 1 {
		tb.Fatalf("history is empty")
	}
	return h[0]
}

func TestSubmitPlanAssignsGenerations(t *testing.T) {
	h := newHarness(t)
	for want := uint64(1); want <= 3; want++ {
		if got := h.mustSubmit(validPlan()); got != want {
			t.Fatalf("generation %d, want %d", got, want)
		}
		if h.s.NextGeneration() != want+1 {
			t.Fatalf("next generation %d, want %d", h.s.NextGeneration(), want+1)
		}
	}
	// Clean-up must not make generations reusable, nor must a restore.
	if r := h.cleanup(1); !slices.Equal(r.Deleted, []uint64{1, 2}) {
		t.Fatalf("cleanup deleted %v, want [1 2]", r.Deleted)
	}
	if got := h.mustSubmit(validPlan()); got != 4 {
		t.Fatalf("generation after clean-up %d, want 4", got)
	}
	s, err := Restore(marshal(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	h.cleanup(1)
	if got := h.mustSubmit(validPlan()); got != 5 {
		t.Fatalf("generation after restore and clean-up %d, want 5", got)
	}
	// A generation set by the caller is ignored.
	p := validPlan()
	p.Generation = 99
	if got := h.mustSubmit(p); got != 6 || h.s.Plan(99) != nil {
		t.Fatalf("caller's generation honoured: got %d", got)
	}
}

func TestSubmitPlanStoresCanonicalCopy(t *testing.T) {
	h := newHarness(t)
	h.advance(5 * time.Second)
	in := plan(weighted("API.DnsPlan.Test.", 10, 0), weighted(v6, 1))
	r := h.submit(in, false)
	wantErr(t, "submit", r, nil)
	stored := h.s.Plan(r.Generation)
	if stored == in {
		t.Fatalf("the caller's plan is stored, not a copy")
	}
	if stored.Endpoints[0].Name != api || in.Endpoints[0].Name != "API.DnsPlan.Test." {
		t.Fatalf("names: stored %q, input %q", stored.Endpoints[0].Name, in.Endpoints[0].Name)
	}
	if stored.Generation != r.Generation || in.Generation != 0 {
		t.Fatalf("generation: stored %d, input %d", stored.Generation, in.Generation)
	}
	if !stored.CreatedAt.AsTime().Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("created_at %v, want the stamp", stored.CreatedAt.AsTime())
	}
	in.Endpoints[1].Targets[0].Weight = 0
	if stored.Endpoints[1].Targets[0].Weight != 1 {
		t.Fatalf("changing the submitted plan changed the stored one")
	}
	// A creation time set by the planner is kept.
	p := validPlan()
	p.CreatedAt = timestamppb.New(t0.Add(-time.Hour))
	g := h.mustSubmit(p)
	if !h.s.Plan(g).CreatedAt.AsTime().Equal(t0.Add(-time.Hour)) {
		t.Fatalf("planner's created_at replaced")
	}
	ev := h.s.History(0)
	if ev[0].Kind != "submit" || ev[0].Outcome != "accepted" || ev[0].Generation != 1 || ev[0].Actor != "planner-1" {
		t.Fatalf("history %v", ev[0])
	}
}

// TestVelocity: applying a plan may not drop what an endpoint serves by
// more than the limit, unless the plan was forced; the submit answers the
// same early. Velocity is judged on what is applied.
func TestVelocity(t *testing.T) {
	tests := []struct {
		name    string
		before  []uint32
		after   []uint32
		limit   float64
		force   bool
		wantErr error
	}{
		{"over the limit", []uint32{100}, []uint32{40}, 0.5, false, ErrVelocity},
		{"over the limit, forced", []uint32{100}, []uint32{40}, 0.5, true, nil},
		{"exactly at the limit", []uint32{100}, []uint32{50}, 0.5, false, nil},
		{"just over the limit", []uint32{100}, []uint32{49}, 0.5, false, ErrVelocity},
		{"unchanged, limit 0", []uint32{100}, []uint32{100}, 0, false, nil},
		{"any drop, limit 0", []uint32{100}, []uint32{99}, 0, false, ErrVelocity},
		{"growth", []uint32{100}, []uint32{1000}, 0, false, nil},
		{"a target drained, within", []uint32{60, 40}, []uint32{60, 0}, 0.5, false, nil},
		{"a target drained, over", []uint32{60, 40}, []uint32{60, 0}, 0.25, false, ErrVelocity},
		{"almost everything drained, limit 1", []uint32{1000}, []uint32{1}, 1, false, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			l := h.mustAcquire("enactor", "enactor-a", time.Hour)
			h.mustApply(h.mustSubmit(plan(weighted(api, tc.before...))), "enactor", l.Token, "enactor-a")
			h.setPolicy(tc.limit, time.Minute)
			fp := fingerprint(t, h.s)
			r := h.submit(plan(weighted(fips, 1), weighted(api, tc.after...)), tc.force)
			wantErr(t, "submit", r, tc.wantErr)
			if tc.wantErr == nil {
				if tc.force && lastEvent(t, h.s).Reason != "forced" {
					t.Fatalf("forced submit not marked in history: %v", lastEvent(t, h.s))
				}
				h.mustApply(r.Generation, "enactor", l.Token, "enactor-a")
				return
			}
			if errors.Is(r.Err, ErrInvalid) || Reason(r.Err) != contract.ReasonVelocity {
				t.Fatalf("velocity error %v has reason %q", r.Err, Reason(r.Err))
			}
			if !bytes.Equal(fp, fingerprint(t, h.s)) {
				t.Fatalf("refused plan changed the state")
			}
			if ev := lastEvent(t, h.s); ev.Outcome != "rejected" || ev.Endpoint != api {
				t.Fatalf("history %v, want a rejection naming %s", ev, api)
			}
		})
	}
}

func TestAcquireLease(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", 3*time.Second)
	if l.Token != h.index || l.Holder != "enactor-a" || l.Name != "enactor" || !l.ExpiresAt.AsTime().Equal(t0.Add(3*time.Second)) || l.Ttl.AsDuration() != 3*time.Second {
		t.Fatalf("lease %v", l)
	}
	if got := h.s.Leases(); len(got) != 1 || !proto.Equal(got[0], l) {
		t.Fatalf("Leases() = %v", got)
	}

	// Held by another and unexpired, up to the last nanosecond.
	fp := fingerprint(t, h.s)
	h.advance(3*time.Second - 1)
	r := h.acquire("enactor", "enactor-b", time.Second)
	wantErr(t, "acquire held lease", r, ErrLeaseHeld)
	if Reason(r.Err) != contract.ReasonLeaseHeld || r.Lease != nil || !bytes.Equal(fp, fingerprint(t, h.s)) {
		t.Fatalf("refused acquire: %+v, state changed: %v", r, !bytes.Equal(fp, fingerprint(t, h.s)))
	}
	// Standbys' refused acquires are routine and stay out of the history.
	if ev := lastEvent(t, h.s); ev.Kind != "acquire" || ev.Outcome != "accepted" || ev.Token != l.Token {
		t.Fatalf("history %v", ev)
	}

	// At the expiry instant the lease is free; the new token is the index.
	h.advance(1)
	l2 := h.mustAcquire("enactor", "enactor-b", time.Second)
	if l2.Token != h.index || l2.Token <= l.Token {
		t.Fatalf("token %d after %d at index %d", l2.Token, l.Token, h.index)
	}

	// Tokens increase across leases too.
	l3 := h.mustAcquire("enactor-fips", "enactor-a", time.Second)
	if l3.Token <= l2.Token {
		t.Fatalf("token %d of another lease not above %d", l3.Token, l2.Token)
	}

	// The holder may acquire again; that supersedes its own old token.
	l4 := h.mustAcquire("enactor", "enactor-b", 2*time.Second)
	if l4.Token <= l3.Token {
		t.Fatalf("re-acquire token %d", l4.Token)
	}
	wantErr(t, "renew superseded own token", h.renew("enactor", "enactor-b", l2.Token), ErrFenced)
	wantErr(t, "renew current token", h.renew("enactor", "enactor-b", l4.Token), nil)
}

func TestAcquireLeaseInvalid(t *testing.T) {
	tests := []struct {
		name, lease, holder string
		ttl                 time.Duration
	}{
		{"no name", "", "enactor-a", time.Second},
		{"no holder", "enactor", "", time.Second},
		{"long name", strings.Repeat("n", contract.MaxIDLength+1), "enactor-a", time.Second},
		{"no ttl", "enactor", "enactor-a", 0},
		{"ttl too short", "enactor", "enactor-a", contract.MinLeaseTTL - 1},
		{"ttl too long", "enactor", "enactor-a", contract.MaxLeaseTTL + 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			wantErr(t, "acquire", h.acquire(tc.lease, tc.holder, tc.ttl), ErrInvalid)
			if len(h.s.Leases()) != 0 {
				t.Fatalf("invalid acquire granted a lease")
			}
		})
	}
	h := newHarness(t)
	if r := h.do(&pb.AcquireLeaseRequest{Name: "enactor", Holder: "enactor-a"}); !errors.Is(r.Err, ErrInvalid) {
		t.Fatalf("acquire without ttl: %v", r.Err)
	}
}

func TestRenewLease(t *testing.T) {
	setup := func(t *testing.T) (*harness, *pb.Lease) {
		h := newHarness(t)
		return h, h.mustAcquire("enactor", "enactor-a", 2*time.Second)
	}
	t.Run("extends from now by the ttl", func(t *testing.T) {
		h, l := setup(t)
		h.advance(1500 * time.Millisecond)
		r := h.renew("enactor", "enactor-a", l.Token)
		wantErr(t, "renew", r, nil)
		if r.Lease.Token != l.Token || !r.Lease.ExpiresAt.AsTime().Equal(t0.Add(3500*time.Millisecond)) {
			t.Fatalf("renewed lease %v", r.Lease)
		}
		if l.ExpiresAt.AsTime() != t0.Add(2*time.Second) {
			t.Fatalf("renew changed the lease handed out before")
		}
		// Renewed in time, the lease outlives its first expiry.
		h.advance(time.Second)
		wantErr(t, "acquire by other", h.acquire("enactor", "enactor-b", time.Second), ErrLeaseHeld)
		wantErr(t, "renew again", h.renew("enactor", "enactor-a", l.Token), nil)
	})
	for _, tc := range []struct {
		name   string
		lease  string
		holder string
		token  func(*pb.Lease) uint64
		wait   time.Duration
	}{
		{"wrong token", "enactor", "enactor-a", func(l *pb.Lease) uint64 { return l.Token + 1 }, 0},
		{"wrong holder", "enactor", "enactor-b", func(l *pb.Lease) uint64 { return l.Token }, 0},
		{"unknown lease", "other", "enactor-a", func(l *pb.Lease) uint64 { return l.Token }, 0},
		{"after expiry", "enactor", "enactor-a", func(l *pb.Lease) uint64 { return l.Token }, 2 * time.Second},
		{"long after expiry", "enactor", "enactor-a", func(l *pb.Lease) uint64 { return l.Token }, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, l := setup(t)
			h.advance(tc.wait)
			fp := fingerprint(t, h.s)
			r := h.renew(tc.lease, tc.holder, tc.token(l))
			wantErr(t, "renew", r, ErrFenced)
			if r.Lease != nil || !bytes.Equal(fp, fingerprint(t, h.s)) || Reason(r.Err) != contract.ReasonFenced {
				t.Fatalf("refused renew returned %v or changed the state", r.Lease)
			}
			if ev := lastEvent(t, h.s); ev.Kind != "renew" || ev.Outcome != "rejected" {
				t.Fatalf("history %v", ev)
			}
		})
	}
}

func TestReleaseLease(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Minute)
	wantErr(t, "release with wrong token", h.release("enactor", "enactor-a", l.Token+1), ErrFenced)
	wantErr(t, "release by other", h.release("enactor", "enactor-b", l.Token), ErrFenced)
	if len(h.s.Leases()) != 1 {
		t.Fatalf("refused release dropped the lease")
	}
	wantErr(t, "release", h.release("enactor", "enactor-a", l.Token), nil)
	if len(h.s.Leases()) != 0 {
		t.Fatalf("released lease still listed")
	}
	wantErr(t, "release again", h.release("enactor", "enactor-a", l.Token), nil)
	wantErr(t, "renew released", h.renew("enactor", "enactor-a", l.Token), ErrFenced)
	l2 := h.mustAcquire("enactor", "enactor-b", time.Minute)
	if l2.Token <= l.Token {
		t.Fatalf("token %d after release of %d", l2.Token, l.Token)
	}
	// The old holder's token stays dead, even for releasing.
	wantErr(t, "release old token", h.release("enactor", "enactor-a", l.Token), ErrFenced)
	// An expired lease may still be released by its holder.
	h.advance(2 * time.Minute)
	wantErr(t, "release expired", h.release("enactor", "enactor-b", l2.Token), nil)
}

// TestFencingEndToEnd is the AWS race with fencing: A's lease expires, B
// acquires a larger token and applies; A wakes up and its apply with the
// old token is refused and changes nothing.
func TestFencingEndToEnd(t *testing.T) {
	h := newHarness(t)
	g1 := h.mustSubmit(plan(weighted(api, 10), weighted(v6, 10)))
	a := h.mustAcquire("enactor", "enactor-a", 3*time.Second)
	h.mustApply(g1, "enactor", a.Token, "enactor-a")

	h.advance(10 * time.Second) // A pauses well past its lease
	b := h.mustAcquire("enactor", "enactor-b", 3*time.Second)
	if b.Token <= a.Token {
		t.Fatalf("B's token %d not above A's %d", b.Token, a.Token)
	}
	g2 := h.mustSubmit(plan(weighted(api, 20), weighted(v6, 20)))
	g3 := h.mustSubmit(plan(weighted(api, 30), weighted(v6, 30)))
	h.mustApply(g3, "enactor", b.Token, "enactor-b")

	fp := fingerprint(t, h.s)
	for _, tc := range []struct {
		name string
		gen  uint64
		eps  []string
	}{{"old plan", g1, nil}, {"newer plan", g2, nil}, {"newest plan", g3, nil}, {"one endpoint", g2, []string{api}}} {
		r := h.apply(tc.gen, "enactor", a.Token, "enactor-a", tc.eps...)
		wantErr(t, "A's apply of "+tc.name, r, ErrFenced)
		if r.Endpoints != nil {
			t.Fatalf("fenced apply returned results %v", r.Endpoints)
		}
		if ev := lastEvent(t, h.s); ev.Kind != "apply" || ev.Outcome != "rejected" || ev.Token != a.Token || ev.Actor != "enactor-a" {
			t.Fatalf("history %v", ev)
		}
	}
	// B's token in A's hands is no better: the holder must match too.
	wantErr(t, "A with B's token", h.apply(g3, "enactor", b.Token, "enactor-a"), ErrFenced)
	wantErr(t, "A renews", h.renew("enactor", "enactor-a", a.Token), ErrFenced)
	wantErr(t, "A acquires", h.acquire("enactor", "enactor-a", time.Second), ErrLeaseHeld)
	if !bytes.Equal(fp, fingerprint(t, h.s)) {
		t.Fatalf("fenced commands changed the state")
	}
	for _, ep := range []string{api, v6} {
		if a := h.s.Applied(ep); a.Generation != g3 || a.EnactorId != "enactor-b" || a.LeaseToken != b.Token {
			t.Fatalf("%s: %v", ep, a)
		}
	}
	// Even once B's lease expires too, A's old token stays dead.
	h.advance(time.Hour)
	wantErr(t, "A's old token after B expired", h.apply(g3, "enactor", a.Token, "enactor-a"), ErrFenced)
	wantErr(t, "B after expiry", h.apply(g3, "enactor", b.Token, "enactor-b"), ErrFenced)
}

func TestApplyStale(t *testing.T) {
	h := newHarness(t)
	g1 := h.mustSubmit(plan(weighted(api, 1), weighted(v6, 1)))
	g2 := h.mustSubmit(plan(weighted(api, 2), weighted(v6, 2)))
	l := h.mustAcquire("enactor", "enactor-a", time.Minute)
	h.mustApply(g2, "enactor", l.Token, "enactor-a", api)
	before := h.s.Applied(api)
	fp := fingerprint(t, h.s)

	r := h.apply(g1, "enactor", l.Token, "enactor-a", api)
	wantErr(t, "stale apply", r, nil)
	want := &pb.EndpointResult{Endpoint: api, Outcome: pb.Outcome_OUTCOME_STALE, AppliedGeneration: g2}
	if len(r.Endpoints) != 1 || !proto.Equal(r.Endpoints[0], want) {
		t.Fatalf("results %v, want %v", r.Endpoints, want)
	}
	if h.s.Applied(api) != before || !bytes.Equal(fp, fingerprint(t, h.s)) {
		t.Fatalf("stale apply changed the state")
	}
	if ev := lastEvent(t, h.s); ev.Outcome != "stale" || ev.Endpoint != api {
		t.Fatalf("history %v", ev)
	}

	// Re-applying the same generation under a newer token is stale too
	// (the same write retried under the same token is not: TestApplyRetry).
	l = h.mustAcquire("enactor", "enactor-a", time.Minute)
	r = h.apply(g2, "enactor", l.Token, "enactor-a", api)
	if r.Endpoints[0].Outcome != pb.Outcome_OUTCOME_STALE {
		t.Fatalf("re-apply: %v", r.Endpoints)
	}

	// Per endpoint: the old plan still applies where nothing newer is.
	r = h.apply(g1, "enactor", l.Token, "enactor-a")
	wantErr(t, "mixed apply", r, nil)
	got := map[string]pb.Outcome{}
	for _, e := range r.Endpoints {
		got[e.Endpoint] = e.Outcome
	}
	if got[api] != pb.Outcome_OUTCOME_STALE || got[v6] != pb.Outcome_OUTCOME_APPLIED {
		t.Fatalf("mixed apply outcomes %v", got)
	}
	if h.s.Applied(api).Generation != g2 || h.s.Applied(v6).Generation != g1 {
		t.Fatalf("applied: %v", h.s.AppliedAll())
	}
}

func TestApplyEndpoints(t *testing.T) {
	h := newHarness(t)
	h.advance(time.Minute)
	g := h.mustSubmit(plan(weighted(api, 1, 0), weighted(fips, 2), weighted(v6, 3)))
	l := h.mustAcquire("enactor", "enactor-a", time.Minute)

	// Named endpoints, in any case, in the order asked; a repeat is the
	// same write under the same token, answered as applied.
	r := h.apply(g, "enactor", l.Token, "enactor-a", "V6.DNSPLAN.TEST.", api, api)
	wantErr(t, "apply", r, nil)
	want := []*pb.EndpointResult{
		{Endpoint: v6, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: g},
		{Endpoint: api, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: g},
		{Endpoint: api, Outcome: pb.Outcome_OUTCOME_APPLIED, AppliedGeneration: g},
	}
	if !slices.EqualFunc(r.Endpoints, want, func(a, b *pb.EndpointResult) bool { return proto.Equal(a, b) }) {
		t.Fatalf("results %v, want %v", r.Endpoints, want)
	}
	if h.s.Applied(fips) != nil || h.s.NumApplied() != 2 {
		t.Fatalf("an endpoint not asked for was applied: %v", h.s.AppliedAll())
	}

	// Materialized: the plan's records, with who, when and how (the
	// plan's own target records, shared: stored values are never written).
	a := h.s.Applied("API.dnsplan.test.")
	ep := h.s.Plan(g).Endpoints[0]
	if a.Endpoint != api || a.Generation != g || a.Ttl != ep.Ttl || a.EnactorId != "enactor-a" || a.LeaseToken != l.Token ||
		a.Revision != h.index || !a.AppliedAt.AsTime().Equal(t0.Add(time.Minute)) {
		t.Fatalf("applied %v", a)
	}
	if len(a.Targets) != len(ep.Targets) {
		t.Fatalf("targets %v, want %v", a.Targets, ep.Targets)
	}
	for i := range a.Targets {
		if !proto.Equal(a.Targets[i], ep.Targets[i]) {
			t.Fatalf("target %d differs from the plan's: %v vs %v", i, a.Targets[i], ep.Targets[i])
		}
	}

	// No endpoints named: every endpoint of the plan, in plan order.
	r = h.apply(g, "enactor", l.Token, "enactor-a")
	var names []string
	for _, e := range r.Endpoints {
		names = append(names, e.Endpoint)
	}
	if !slices.Equal(names, []string{api, fips, v6}) || h.s.NumApplied() != 3 {
		t.Fatalf("apply all: %v", r.Endpoints)
	}
	if got := h.s.AppliedAll(); got[0].Endpoint != api || got[1].Endpoint != fips || got[2].Endpoint != v6 {
		t.Fatalf("AppliedAll not sorted: %v", got)
	}
}

func TestApplyNotFound(t *testing.T) {
	tests := []struct {
		name string
		gen  func(h *harness) uint64
		eps  []string
	}{
		{"unknown generation", func(h *harness) uint64 { return h.s.NextGeneration() }, nil},
		{"far future generation", func(h *harness) uint64 { return 1 << 60 }, nil},
		{"deleted generation", func(h *harness) uint64 { return 1 }, nil},
		{"unknown endpoint", func(h *harness) uint64 { return 3 }, []string{"nope.dnsplan.test."}},
		{"endpoint of another plan", func(h *harness) uint64 { return 3 }, []string{fips}},
		{"one unknown among known", func(h *harness) uint64 { return 3 }, []string{api, "nope.dnsplan.test."}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustSubmit(plan(weighted(fips, 1)))
			h.mustSubmit(plan(weighted(api, 1)))
			h.mustSubmit(plan(weighted(api, 2), weighted(v6, 2)))
			if r := h.cleanup(2); !slices.Equal(r.Deleted, []uint64{1}) {
				t.Fatalf("cleanup deleted %v", r.Deleted)
			}
			l := h.mustAcquire("enactor", "enactor-a", time.Minute)
			fp := fingerprint(t, h.s)
			r := h.apply(tc.gen(h), "enactor", l.Token, "enactor-a", tc.eps...)
			wantErr(t, "apply", r, ErrNotFound)
			if r.Endpoints != nil || !bytes.Equal(fp, fingerprint(t, h.s)) || Reason(r.Err) != contract.ReasonNotFound {
				t.Fatalf("refused apply returned %v or changed the state", r.Endpoints)
			}
		})
	}
}

func TestApplyInvalid(t *testing.T) {
	tests := []struct {
		name string
		req  *pb.ApplyPlanRequest
	}{
		{"no generation", &pb.ApplyPlanRequest{LeaseName: "enactor", LeaseToken: 1, EnactorId: "enactor-a"}},
		{"no token", &pb.ApplyPlanRequest{Generation: 1, LeaseName: "enactor", EnactorId: "enactor-a"}},
		{"no lease name", &pb.ApplyPlanRequest{Generation: 1, LeaseToken: 1, EnactorId: "enactor-a"}},
		{"no enactor", &pb.ApplyPlanRequest{Generation: 1, LeaseName: "enactor", LeaseToken: 1}},
		{"bad endpoint", &pb.ApplyPlanRequest{Generation: 1, LeaseName: "enactor", LeaseToken: 1, EnactorId: "enactor-a", Endpoints: []string{"no-dot"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.mustSubmit(validPlan())
			h.mustAcquire("enactor", "enactor-a", time.Minute) // token 2
			if tc.req.LeaseToken != 0 {
				tc.req.LeaseToken = 2 // the real token: only the shape is wrong
			}
			fp := fingerprint(t, h.s)
			wantErr(t, "apply", h.do(tc.req), ErrInvalid)
			if !bytes.Equal(fp, fingerprint(t, h.s)) {
				t.Fatalf("invalid apply changed the state")
			}
		})
	}
}

func TestFreeze(t *testing.T) {
	h := newHarness(t)
	g1 := h.mustSubmit(validPlan())
	l := h.mustAcquire("enactor", "enactor-a", time.Hour)
	h.mustApply(g1, "enactor", l.Token, "enactor-a")
	g2 := h.mustSubmit(validPlan())
	h.mustSubmit(validPlan())

	r := h.freeze(true, "incident 42")
	if !r.Frozen || r.Err != nil {
		t.Fatalf("freeze: %+v", r)
	}
	if on, why := h.s.Frozen(); !on || why != "incident 42" {
		t.Fatalf("Frozen() = %v, %q", on, why)
	}
	fp := fingerprint(t, h.s)
	r = h.apply(g2, "enactor", l.Token, "enactor-a")
	wantErr(t, "apply while frozen", r, ErrFrozen)
	if Reason(r.Err) != contract.ReasonFrozen || !strings.Contains(r.Err.Error(), "incident 42") {
		t.Fatalf("frozen error %q", r.Err)
	}
	wantErr(t, "cleanup while frozen", h.cleanup(1), ErrFrozen)
	if !bytes.Equal(fp, fingerprint(t, h.s)) {
		t.Fatalf("frozen apply or clean-up changed the state")
	}
	// Planning and leases go on while frozen.
	wantErr(t, "submit while frozen", h.submit(validPlan(), false), nil)
	wantErr(t, "renew while frozen", h.renew("enactor", "enactor-a", l.Token), nil)
	// Freezing again keeps it frozen with the new reason.
	h.freeze(true, "still")
	if _, why := h.s.Frozen(); why != "still" {
		t.Fatalf("reason %q", why)
	}

	r = h.freeze(false, "over")
	if r.Frozen {
		t.Fatalf("unfreeze: %+v", r)
	}
	if on, why := h.s.Frozen(); on || why != "" {
		t.Fatalf("Frozen() = %v, %q after unfreeze", on, why)
	}
	h.mustApply(g2, "enactor", l.Token, "enactor-a")
	if r := h.cleanup(1); !slices.Equal(r.Deleted, []uint64{g1, 3}) {
		t.Fatalf("cleanup after unfreeze deleted %v", r.Deleted)
	}
	ev := h.s.History(0)
	var outcomes []string
	for _, e := range ev {
		if e.Kind == "freeze" {
			outcomes = append(outcomes, e.Outcome+":"+e.Reason)
		}
	}
	if !slices.Equal(outcomes, []string{"frozen:incident 42", "frozen:still", "unfrozen:over"}) {
		t.Fatalf("freeze history %v", outcomes)
	}
}

// TestCleanup: clean-up keeps the newest keep_last plans and every applied
// one, and deletes the rest in generation order.
func TestCleanup(t *testing.T) {
	tests := []struct {
		keep    uint32
		wantErr error
		deleted []uint64
	}{
		{0, ErrInvalid, nil},
		{1, nil, []uint64{1, 3, 4}},
		{2, nil, []uint64{1, 3, 4}},
		{3, nil, []uint64{1, 3}},
		{4, nil, []uint64{1}},
		{5, nil, []uint64{1}},
		{6, nil, nil},
		{100, nil, nil},
	}
	for _, tc := range tests {
		h := newHarness(t)
		for i := 0; i < 6; i++ {
			h.mustSubmit(plan(weighted(api, 1), weighted(v6, 1)))
		}
		l := h.mustAcquire("enactor", "enactor-a", time.Minute)
		h.mustApply(2, "enactor", l.Token, "enactor-a", api)
		h.mustApply(5, "enactor", l.Token, "enactor-a", v6)
		r := h.cleanup(tc.keep)
		wantErr(t, "cleanup", r, tc.wantErr)
		if !slices.Equal(r.Deleted, tc.deleted) {
			t.Fatalf("keep %d: deleted %v, want %v", tc.keep, r.Deleted, tc.deleted)
		}
		for g := uint64(1); g <= 6; g++ {
			if gone := h.s.Plan(g) == nil; gone != slices.Contains(tc.deleted, g) {
				t.Fatalf("keep %d: generation %d gone=%v", tc.keep, g, gone)
			}
		}
		// Only a clean-up that deleted something is recorded.
		if ev := lastEvent(t, h.s); tc.wantErr == nil && (ev.Kind == "cleanup") != (len(tc.deleted) > 0) {
			t.Fatalf("keep %d: history %v", tc.keep, ev)
		}
	}

	// On an empty store there is nothing to do.
	h := newHarness(t)
	if r := h.cleanup(1); r.Err != nil || r.Deleted != nil {
		t.Fatalf("cleanup of nothing: %+v", r)
	}

	// Once no endpoint serves a generation any more, it may go.
	h = newHarness(t)
	l := h.mustAcquire("enactor", "enactor-a", time.Minute)
	for i := 0; i < 3; i++ {
		h.mustSubmit(plan(weighted(api, 1)))
	}
	h.mustApply(1, "enactor", l.Token, "enactor-a")
	if r := h.cleanup(1); !slices.Equal(r.Deleted, []uint64{2}) {
		t.Fatalf("deleted %v, want [2]", r.Deleted)
	}
	h.mustApply(3, "enactor", l.Token, "enactor-a")
	if r := h.cleanup(1); !slices.Equal(r.Deleted, []uint64{1}) {
		t.Fatalf("deleted %v, want [1]", r.Deleted)
	}
}

// TestAWSInterleaving replays the October 2025 sequence: a delayed enactor
// with an old plan, a fast one that applies a much newer plan and cleans
// up. The endpoint never goes back, never empties, and its plan is kept.
func TestAWSInterleaving(t *testing.T) {
	h := newHarness(t)
	slow := h.mustAcquire("enactor", "enactor-a", 3*time.Second)
	old := h.mustSubmit(plan(weighted(api, 10, 10)))
	for i := 0; i < 20; i++ {
		h.advance(time.Second)
		h.mustSubmit(plan(weighted(api, 10, 10)))
	}
	fast := h.mustAcquire("enactor", "enactor-b", 3*time.Second)
	newest := h.s.NextGeneration() - 1
	h.mustApply(newest, "enactor", fast.Token, "enactor-b")
	if r := h.cleanup(3); len(r.Deleted) != int(newest)-3 {
		t.Fatalf("cleanup deleted %v", r.Deleted)
	}
	// The delayed enactor finally writes its old plan.
	r := h.apply(old, "enactor", slow.Token, "enactor-a")
	wantErr(t, "delayed apply", r, ErrFenced)
	// Even with a valid lease, the old generation is gone or stale.
	h.advance(10 * time.Second)
	again := h.mustAcquire("enactor", "enactor-a", 3*time.Second)
	wantErr(t, "old generation", h.apply(old, "enactor", again.Token, "enactor-a"), ErrNotFound)
	r = h.apply(newest-1, "enactor", again.Token, "enactor-a")
	if r.Err != nil || r.Endpoints[0].Outcome != pb.Outcome_OUTCOME_STALE {
		t.Fatalf("older kept generation: %+v", r)
	}
	a := h.s.Applied(api)
	if a.Generation != newest || len(a.Targets) != 2 || h.s.Plan(newest) == nil {
		t.Fatalf("endpoint %v", a)
	}
}

func TestTimeNeverRunsBackwards(t *testing.T) {
	h := newHarness(t)
	h.advance(10 * time.Second)
	h.freeze(false, "")
	h.advance(-5 * time.Second) // a new leader whose clock is behind
	l := h.mustAcquire("enactor", "enactor-a", 2*time.Second)
	if !h.s.Now().Equal(t0.Add(10*time.Second)) || h.s.Now().Location() != time.UTC {
		t.Fatalf("Now() = %v", h.s.Now())
	}
	if !l.ExpiresAt.AsTime().Equal(t0.Add(12 * time.Second)) {
		t.Fatalf("lease expires %v, want judged on the state's time", l.ExpiresAt.AsTime())
	}
	// Once past expiry by some stamp, a later command with an earlier
	// stamp cannot bring the lease back to life.
	h.advance(8 * time.Second) // t0+13s
	h.freeze(false, "")
	h.advance(-3 * time.Second) // t0+10s
	wantErr(t, "renew after expiry with earlier stamp", h.renew("enactor", "enactor-a", l.Token), ErrFenced)
	wantErr(t, "acquire by other", h.acquire("enactor", "enactor-b", time.Second), nil)
	if h.s.LastIndex() != h.index {
		t.Fatalf("LastIndex %d, want %d", h.s.LastIndex(), h.index)
	}
	// A smaller index does not move LastIndex back either.
	h.s.Apply(1, Command{Stamp: t0, Payload: &pb.SetFreezeRequest{}})
	if h.s.LastIndex() != h.index {
		t.Fatalf("LastIndex went back to %d", h.s.LastIndex())
	}
}

func TestHistoryBounded(t *testing.T) {
	h := newHarness(t)
	const n = 2*HistoryLimit + 500
	for i := 0; i < n; i++ {
		h.freeze(i%2 == 0, "")
	}
	check := func(s *State) {
		t.Helper()
		ev := s.History(0)
		if len(ev) != HistoryLimit {
			t.Fatalf("history holds %d events, want %d", len(ev), HistoryLimit)
		}
		if ev[0].Index != n-HistoryLimit+1 || ev[len(ev)-1].Index != n {
			t.Fatalf("history spans %d..%d, want %d..%d", ev[0].Index, ev[len(ev)-1].Index, n-HistoryLimit+1, n)
		}
		for i := 1; i < len(ev); i++ {
			if ev[i].Index != ev[i-1].Index+1 {
				t.Fatalf("history has a gap at %d", ev[i].Index)
			}
		}
		last := s.History(10)
		if len(last) != 10 || last[9].Index != n || last[0].Index != n-9 {
			t.Fatalf("History(10) spans %d..%d", last[0].Index, last[len(last)-1].Index)
		}
		if got := s.History(HistoryLimit + 1); len(got) != HistoryLimit {
			t.Fatalf("History(limit+1) holds %d", len(got))
		}
	}
	check(h.s)
	s, err := Restore(marshal(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	check(s)
	check(h.s.Clone())
	// History hands out a copy: changing it does not change the state.
	ev := h.s.History(0)
	ev[0] = nil
	if h.s.History(0)[0] == nil {
		t.Fatalf("History shares its slice")
	}
}

func TestApplyPanicsWithoutRule(t *testing.T) {
	tests := []struct {
		name string
		c    Command
	}{
		{"nil payload", Command{}},
		{"public plan instead of SubmitPlan", Command{Payload: validPlan()}},
		{"request of no command", Command{Payload: &pb.StatusRequest{}}},
		{"response message", Command{Payload: &pb.ApplyPlanResponse{}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Fatalf("Apply did not panic")
				}
			}()
			New().Apply(1, tc.c)
		})
	}
}

func TestMembers(t *testing.T) {
	h := newHarness(t)
	h.do(&statev1.SetMember{Id: "n2", RaftAddr: "r2", GrpcAddr: "g2"})
	h.do(&statev1.SetMember{Id: "n1", RaftAddr: "r1", GrpcAddr: "g1"})
	h.do(&statev1.SetMember{Id: "n1", RaftAddr: "r1b", GrpcAddr: "g1b"})
	want := []Member{{"n1", "r1b", "g1b", 0}, {"n2", "r2", "g2", 0}}
	if got := h.s.Members(); !slices.Equal(got, want) {
		t.Fatalf("Members() = %v, want %v", got, want)
	}
	if m, ok := h.s.Member("n2"); !ok || m != want[1] {
		t.Fatalf("Member(n2) = %v, %v", m, ok)
	}
	h.do(&statev1.RemoveMember{Id: "n2"})
	h.do(&statev1.RemoveMember{Id: "never"})
	if _, ok := h.s.Member("n2"); ok || len(h.s.Members()) != 1 {
		t.Fatalf("after remove: %v", h.s.Members())
	}
	s, err := Restore(marshal(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Members(), h.s.Members()) {
		t.Fatalf("restored members %v", s.Members())
	}
}

// richState builds a state with something of everything in it.
func richState(t *testing.T) *harness {
	h := newHarness(t)
	h.do(&statev1.SetMember{Id: "n1", RaftAddr: "r1", GrpcAddr: "g1"})
	for i := 0; i < 4; i++ {
		h.advance(time.Second)
		h.mustSubmit(plan(weighted(api, 1, 2), weighted(v6, 3)))
	}
	l := h.mustAcquire("enactor", "enactor-a", time.Minute)
	h.mustAcquire("enactor-fips", "enactor-b", time.Second)
	h.mustApply(3, "enactor", l.Token, "enactor-a")
	h.cleanup(1)
	h.submit(plan(weighted(api, 0)), false) // a refusal in the history
	h.freeze(true, "testing")
	return h
}

func TestMarshalRestore(t *testing.T) {
	h := richState(t)
	b := marshal(t, h.s)
	if again := marshal(t, h.s); !bytes.Equal(b, again) {
		t.Fatalf("Marshal is not deterministic")
	}
	s, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, marshal(t, s)) {
		t.Fatalf("Marshal(Restore(b)) != b")
	}
	if s.String() != h.s.String() || !s.Now().Equal(h.s.Now()) || s.LastIndex() != h.s.LastIndex() {
		t.Fatalf("restored %v at %v, want %v at %v", s, s.Now(), h.s, h.s.Now())
	}
	// The restored state goes on exactly like the original.
	stamp := h.stamp.Add(10 * time.Second)
	next := Command{Stamp: stamp, Payload: &pb.SetFreezeRequest{}}
	h.s.Apply(h.index+1, next)
	s.Apply(h.index+1, next)
	lease := s.Leases()[0]
	apply := Command{Stamp: stamp, Payload: &pb.ApplyPlanRequest{Generation: 4, LeaseName: lease.Name, LeaseToken: lease.Token, EnactorId: lease.Holder}}
	r1, r2 := h.s.Apply(h.index+2, apply), s.Apply(h.index+2, apply)
	if r1.Err != nil || r2.Err != nil || !anyApplied(r2) || !bytes.Equal(marshal(t, h.s), marshal(t, s)) {
		t.Fatalf("restored state diverged: %+v vs %+v", r1, r2)
	}

	// The empty state round-trips to an empty state.
	e, err := Restore(marshal(t, New()))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(marshal(t, e), marshal(t, New())) || e.NextGeneration() != 1 || !e.Now().Equal(time.Unix(0, 0)) {
		t.Fatalf("empty round trip: %v", e)
	}
	if _, err := Restore([]byte{0xff, 0xff, 0xff}); err == nil {
		t.Fatalf("Restore accepted garbage")
	}
}

func TestClone(t *testing.T) {
	h := richState(t)
	h.do(refusals("n1", 2)) // kept apart from the other events
	c := h.s.Clone()
	before := marshal(t, c)
	if !bytes.Equal(before, marshal(t, h.s)) {
		t.Fatalf("clone differs from original")
	}
	h.freeze(false, "")
	h.advance(2 * time.Second)
	l := h.mustAcquire("enactor-fips", "enactor-c", time.Minute)
	h.mustApply(4, "enactor-fips", l.Token, "enactor-c")
	wantErr(t, "forced submit", h.submit(validPlan(), true), nil)
	h.cleanup(1)
	h.do(&statev1.RemoveMember{Id: "n1"})
	if !bytes.Equal(before, marshal(t, c)) {
		t.Fatalf("commands on the original changed the clone")
	}
	c.Apply(h.index+1, Command{Stamp: t0, Payload: &pb.SetFreezeRequest{Frozen: true, Reason: "clone"}})
	if _, why := h.s.Frozen(); why == "clone" {
		t.Fatalf("commands on the clone changed the original")
	}
}

func TestViews(t *testing.T) {
	h := richState(t)
	s := h.s
	if s.NumPlans() != 2 || s.NumApplied() != 2 || len(s.Plans()) != 2 {
		t.Fatalf("counts: %v", s)
	}
	gensOf := func(ps []*pb.Plan) []uint64 {
		var gens []uint64
		for _, p := range ps {
			gens = append(gens, p.Generation)
		}
		return gens
	}
	if got := gensOf(s.PlansFrom(0)); !slices.Equal(got, []uint64{3, 4}) {
		t.Fatalf("PlansFrom(0) = %v", got)
	}
	if got := gensOf(s.PlansFrom(4)); !slices.Equal(got, []uint64{4}) {
		t.Fatalf("PlansFrom(4) = %v", got)
	}
	if len(s.PlansFrom(s.NextGeneration())) != 0 {
		t.Fatalf("PlansFrom(next) not empty")
	}
	if s.Applied("nope.") != nil || s.Plan(1) != nil {
		t.Fatalf("unknown lookups not nil")
	}
	if !strings.Contains(s.String(), "frozen=true") {
		t.Fatalf("String() = %q", s.String())
	}
}

func TestReason(t *testing.T) {
	tests := []struct {
		err  error
		want contract.Reason
	}{
		{nil, ""},
		{ErrInvalid, contract.ReasonInvalid},
		{ErrVelocity, contract.ReasonVelocity},
		{ErrLeaseHeld, contract.ReasonLeaseHeld},
		{ErrFenced, contract.ReasonFenced},
		{ErrFrozen, contract.ReasonFrozen},
		{ErrNotFound, contract.ReasonNotFound},
		{ErrFamily, contract.ReasonFamily},
		{ErrDesign, contract.ReasonDesign},
		{ErrNotFounded, contract.ReasonNotFounded},
		{&EndpointError{Endpoint: "a.", Err: fmt.Errorf("%w: x", ErrVelocity)}, contract.ReasonVelocity},
		{errors.Join(errors.New("x"), ErrFenced), contract.ReasonFenced},
		{errors.New("something else"), ""},
	}
	for _, tc := range tests {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// A state whose time is exactly the epoch keeps it through a snapshot, so a
// restored replica judges later (earlier-stamped) commands the same way.
func TestEpochTimeSurvivesSnapshot(t *testing.T) {
	s := New()
	s.Apply(1, Command{Stamp: time.Unix(0, 0), Payload: &pb.SetFreezeRequest{}})
	b, err := s.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	r, err := Restore(b)
	if err != nil {
		t.Fatal(err)
	}
	earlier := Command{Stamp: time.Unix(-10, 0), Payload: &pb.SetFreezeRequest{}}
	s.Apply(2, earlier)
	r.Apply(2, earlier)
	if !s.Now().Equal(r.Now()) || !bytes.Equal(marshal(t, s), marshal(t, r)) {
		t.Fatalf("restored time %v, original %v", r.Now(), s.Now())
	}
}

// A planner that names its lease stores a plan only with the current token
// of an unexpired lease held by the plan's planner_id.
func TestSubmitFencedByPlannerLease(t *testing.T) {
	h := newHarness(t)
	l := h.mustAcquire("planner", "p1", time.Second)
	submit := func(planner string, token uint64) Result {
		p := &pb.Plan{PlannerId: planner, Endpoints: []*pb.EndpointPlan{{Name: "api.dnsplan.test.", Ttl: 30,
			Targets: []*pb.Target{{Id: "a", Address: "192.0.2.1", Weight: 1}}}}}
		return h.do(&statev1.SubmitPlan{Plan: p, LeaseName: "planner", LeaseToken: token})
	}
	if r := submit("p1", l.Token); r.Err != nil || r.Generation != 1 {
		t.Fatalf("holder's submit = %+v", r)
	}
	for name, r := range map[string]Result{
		"wrong token":  submit("p1", l.Token+100),
		"wrong holder": submit("p2", l.Token),
	} {
		wantErr(t, name, r, ErrFenced)
	}
	h.advance(time.Second)
	wantErr(t, "expired lease", submit("p1", l.Token), ErrFenced)
	if h.s.NumPlans() != 1 || h.s.NextGeneration() != 2 {
		t.Fatalf("fenced submits stored something: %v", h.s)
	}
}
