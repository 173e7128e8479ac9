package fsm

import (
	"bytes"
	"testing"
	"time"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

const year = 365 * 24 * time.Hour

// One leader whose clock runs a year ahead stamps one command. The state's
// time moves by at most MaxTimeStep, so once leaders with correct clocks
// stamp again, a lease granted after the bad stamp expires within its TTL
// plus MaxTimeStep of their wall clock, not a year later.
func TestTimeAheadStampCannotFreezeLeases(t *testing.T) {
	h := newHarness(t)
	h.freeze(false, "") // the first stamp of a new state is taken whole: t0
	h.stamp = t0.Add(year)
	h.freeze(false, "")

	// Correct leaders again: their wall clocks run from t0, a second apart.
	h.stamp = t0.Add(time.Second)
	const ttl = time.Second
	l := h.mustAcquire("enactor", "enactor-a", ttl)
	granted := h.stamp
	for {
		h.advance(time.Second)
		if h.acquire("enactor", "enactor-b", ttl).Err == nil {
			break
		}
		if late := h.stamp.Sub(granted); late > MaxTimeStep+ttl+time.Second {
			t.Fatalf("lease %d granted at wall clock %v is still held %v later (state time %v): a clock ahead froze it",
				l.Token, granted.Sub(t0), late, h.s.Now().Sub(t0))
		}
	}
}

// The rule in each case: the first stamp of a new state whole, a stamp
// behind the state ignored, a stamp ahead taken up to MaxTimeStep, and an
// advance above TimeJumpThreshold reported.
func TestTimeRule(t *testing.T) {
	epoch := time.Unix(0, 0).UTC()
	tests := []struct {
		name          string
		from, stamp   time.Time
		want          time.Time
		clipped, jump time.Duration
	}{
		{"first stamp of a new state, taken whole", epoch, t0.Add(year), t0.Add(year), 0, 0},
		{"stamp before the epoch on a new state", epoch, epoch.Add(-time.Hour), epoch, 0, 0},
		{"stamp behind", t0, t0.Add(-time.Hour), t0, 0, 0},
		{"same stamp", t0, t0, t0, 0, 0},
		{"small step", t0, t0.Add(time.Second), t0.Add(time.Second), 0, 0},
		{"step at the jump threshold", t0, t0.Add(TimeJumpThreshold), t0.Add(TimeJumpThreshold), 0, 0},
		{"step above the jump threshold", t0, t0.Add(TimeJumpThreshold + 1), t0.Add(TimeJumpThreshold + 1), 0, TimeJumpThreshold + 1},
		{"step of exactly MaxTimeStep", t0, t0.Add(MaxTimeStep), t0.Add(MaxTimeStep), 0, MaxTimeStep},
		{"step above MaxTimeStep", t0, t0.Add(MaxTimeStep + time.Hour), t0.Add(MaxTimeStep), time.Hour, MaxTimeStep},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := New()
			if !tc.from.Equal(epoch) {
				s.Apply(1, Command{Stamp: tc.from, Payload: &pb.SetFreezeRequest{}})
			}
			r := s.Apply(2, Command{Stamp: tc.stamp, Payload: &pb.SetFreezeRequest{}})
			if !s.Now().Equal(tc.want) || r.TimeClipped != tc.clipped || r.TimeJump != tc.jump {
				t.Fatalf("from %v, stamp %v: now %v, clipped %v, jump %v; want %v, %v, %v",
					tc.from, tc.stamp, s.Now(), r.TimeClipped, r.TimeJump, tc.want, tc.clipped, tc.jump)
			}
		})
	}
}

// A replica restored from a snapshot clips the same stamps the same way:
// time stays monotonic and replicas agree.
func TestTimeClipSurvivesSnapshot(t *testing.T) {
	h := newHarness(t)
	h.freeze(false, "")
	h.stamp = t0.Add(year)
	h.freeze(false, "")
	r, err := Restore(marshal(t, h.s))
	if err != nil {
		t.Fatal(err)
	}
	for i, stamp := range []time.Time{t0.Add(year), t0, t0.Add(MaxTimeStep + time.Second), t0.Add(year)} {
		c := Command{Stamp: stamp, Payload: &pb.SetFreezeRequest{}}
		before := h.s.Now()
		r1, r2 := h.s.Apply(h.index+uint64(i)+1, c), r.Apply(h.index+uint64(i)+1, c)
		if h.s.Now().Before(before) || r1.TimeClipped != r2.TimeClipped || !bytes.Equal(marshal(t, h.s), marshal(t, r)) {
			t.Fatalf("stamp %d: original at %v (clipped %v), restored at %v (clipped %v)", i, h.s.Now(), r1.TimeClipped, r.Now(), r2.TimeClipped)
		}
	}
	if want := t0.Add(3 * MaxTimeStep); !r.Now().Equal(want) {
		t.Fatalf("restored state time %v, want %v", r.Now(), want)
	}
}

func TestLeaderBase(t *testing.T) {
	epoch := time.Unix(0, 0).UTC()
	tests := []struct {
		name           string
		stateNow, wall time.Time
		want           time.Time
	}{
		{"new state takes the wall clock", epoch, t0, t0},
		{"wall clock behind changes nothing", t0, t0.Add(-time.Hour), t0},
		{"wall clock equal", t0, t0, t0},
		{"wall clock a little ahead", t0, t0.Add(5 * time.Second), t0.Add(5 * time.Second)},
		{"wall clock a year ahead moves MaxTimeStep", t0, t0.Add(year), t0.Add(MaxTimeStep)},
	}
	for _, tc := range tests {
		if got := LeaderBase(tc.stateNow, tc.wall); !got.Equal(tc.want) {
			t.Errorf("%s: LeaderBase(%v, %v) = %v, want %v", tc.name, tc.stateNow, tc.wall, got, tc.want)
		}
	}
}

// A cluster idle for longer than MaxTimeStep within one leader's term: the
// first command after the idle stretch moves time by MaxTimeStep, the
// leader re-bases its stamps there, and a lease granted by that command
// survives a renewal a second later. (Stamping base + elapsed without the
// re-base, Apply clips every stamp to one more MaxTimeStep and the lease
// is expired by the next command.)
func TestTimeIdleClusterGrantsLeasesThatLast(t *testing.T) {
	h := newHarness(t)
	base, elapsed := t0, time.Duration(0)
	propose := func() {
		stamp, rebase := LeaderStamp(base, elapsed, h.s.Now())
		if rebase {
			base, elapsed = stamp, 0
		}
		h.stamp = stamp
	}
	propose()
	old := h.mustAcquire("enactor", "enactor-a", 10*time.Second)

	elapsed += 30 * time.Minute // idle, one term
	propose()
	l := h.mustAcquire("other", "enactor-b", 10*time.Second)
	if !h.s.Now().Equal(t0.Add(MaxTimeStep)) {
		t.Fatalf("after the idle stretch state time is %v past t0, want %v", h.s.Now().Sub(t0), MaxTimeStep)
	}
	for i := range 5 {
		elapsed += time.Second
		propose()
		if r := h.renew("other", "enactor-b", l.Token); r.Err != nil {
			t.Fatalf("renewal %d, %ds after the grant: %v (state time %v past t0)", i+1, i+1, r.Err, h.s.Now().Sub(t0))
		}
	}
	// The lease granted before the idle stretch has expired.
	elapsed += time.Second
	propose()
	if r := h.renew("enactor", "enactor-a", old.Token); r.Err == nil {
		t.Fatalf("a lease granted before 30 idle minutes was renewed")
	}
}
