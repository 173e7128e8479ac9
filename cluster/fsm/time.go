package fsm

import "time"

// MaxTimeStep is the most one command can move the state machine's time
// forward. It bounds what one leader with a wrong clock can do to lease
// expiry: a stamp a year ahead moves time by MaxTimeStep, not a year. The
// price is paid by a cluster idle for longer than MaxTimeStep: its next
// command moves time by MaxTimeStep only, and the leader re-bases its
// stamps there (LeaderStamp), so the state's time then runs on at the
// leader's rate, behind the world by what the idle stretch lost. Ten
// minutes is far above any gap between commands of a working cluster
// (enactors renew every second or so) and far above any lease TTL, so
// every lease granted before the idle stretch has expired after its first
// command, as it should.
const MaxTimeStep = 10 * time.Minute

// TimeJumpThreshold is the advance of the state machine's time above which
// Apply reports a jump (Result.TimeJump).
const TimeJumpThreshold = time.Minute

// epoch is the time of a new state; see New.
var epoch = time.Unix(0, 0).UTC()

// advanceTime moves the state machine's time for a command stamped at
// stamp: now = max(now, min(stamp, now + MaxTimeStep)), except that the
// first stamp of a new state (time still at the epoch) is taken whole. It
// returns how much of the stamp was clipped and the advance, if above
// TimeJumpThreshold. It is pure: every replica moves time the same way.
func (s *State) advanceTime(stamp time.Time) (clipped, jump time.Duration) {
	stamp = stamp.UTC()
	if !stamp.After(s.now) {
		return 0, 0
	}
	if s.now.Equal(epoch) {
		s.now = stamp
		return 0, 0
	}
	if limit := s.now.Add(MaxTimeStep); stamp.After(limit) {
		clipped = stamp.Sub(limit)
		stamp = limit
	}
	if d := stamp.Sub(s.now); d > TimeJumpThreshold {
		jump = d
	}
	s.now = stamp
	return clipped, jump
}

// LeaderBase is the time a leader's stamps start from in a new term, taken
// once its barrier has applied every earlier entry: the state's time plus
// how far the leader's wall clock is ahead of it, at most MaxTimeStep. The
// leader then stamps LeaderBase plus the time its monotonic clock measured
// since. A wall clock behind the state changes nothing; one ahead moves
// time by at most MaxTimeStep once per term; a new state (time at the
// epoch) takes the wall clock whole.
func LeaderBase(stateNow, wall time.Time) time.Time {
	stateNow, wall = stateNow.UTC(), wall.UTC()
	if stateNow.Equal(epoch) {
		return wall
	}
	ahead := min(max(wall.Sub(stateNow), 0), MaxTimeStep)
	return stateNow.Add(ahead)
}

// LeaderStamp is the stamp of a command a ready leader proposes: its term's
// base plus the monotonic time elapsed since, unless that is more than
// MaxTimeStep ahead of the state's time (the cluster was idle longer than
// that within the term), in which case the stamp is the state's time plus
// MaxTimeStep and rebase is true: the leader must take that stamp as its
// new base from now on. Without the re-base, Apply would clip every later
// stamp again, time would catch up by MaxTimeStep per command, and a lease
// granted by one command would be expired by the next.
func LeaderStamp(base time.Time, elapsed time.Duration, stateNow time.Time) (stamp time.Time, rebase bool) {
	stamp = base.Add(elapsed)
	if stateNow.Equal(epoch) {
		return stamp, false
	}
	if limit := stateNow.UTC().Add(MaxTimeStep); stamp.After(limit) {
		return limit, true
	}
	return stamp, false
}
