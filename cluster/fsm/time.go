package fsm

import "time"

// MaxTimeStep is the most one command can move the state machine's time
// forward. It bounds what one leader with a wrong clock can do to lease
// expiry: a stamp a year ahead moves time by MaxTimeStep, not a year. The
// price is paid by a cluster idle for longer than MaxTimeStep: its next
// commands catch up by MaxTimeStep each, so leases expire a little late,
// never early (and safety rests on tokens, not on expiry). Ten minutes is
// far above any gap between commands of a working cluster (enactors renew
// every second or so) and far below the time anyone would wait for a lease.
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
