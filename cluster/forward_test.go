package cluster

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
)

// fakeLeader is a leaderView whose term and state a test moves while the
// check runs, as elections would.
type fakeLeader struct {
	term     uint64
	state    raft.RaftState
	verify   error
	duringVF func(*fakeLeader) // runs inside VerifyLeader
	verified bool
}

type fakeFuture struct{ err error }

func (f fakeFuture) Error() error { return f.err }

func (f *fakeLeader) CurrentTerm() uint64   { return f.term }
func (f *fakeLeader) State() raft.RaftState { return f.state }
func (f *fakeLeader) VerifyLeader() raft.Future {
	f.verified = true
	if f.duringVF != nil {
		f.duringVF(f)
	}
	return fakeFuture{f.verify}
}

// The linearizable-read check serves a read only when the barrier of the
// term it read is done and that same term is still current, with this node
// still leading, after a quorum confirmed it.
func TestCheckLinearizable(t *testing.T) {
	tests := []struct {
		name       string
		ready      uint64
		verify     error
		during     func(*fakeLeader)
		wantOK     bool
		wantVerify bool
	}{
		{"ready leader, stable term", 5, nil, nil, true, true},
		{"barrier of this term not done", 4, nil, nil, false, false},
		{"quorum does not confirm", 5, raft.ErrNotLeader, nil, false, true},
		{"re-elected in a later term during the check", 5, nil, func(f *fakeLeader) { f.term = 6 }, false, true},
		{"lost leadership during the check", 5, nil, func(f *fakeLeader) { f.state = raft.Follower }, false, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeLeader{term: 5, state: raft.Leader, verify: tc.verify, duringVF: tc.during}
			err := checkLinearizable(f, func() uint64 { return tc.ready })
			if tc.wantOK != (err == nil) || (err != nil && !errors.Is(err, ErrNotLeader)) {
				t.Fatalf("checkLinearizable = %v, want ok=%v (or ErrNotLeader)", err, tc.wantOK)
			}
			if f.verified != tc.wantVerify {
				t.Fatalf("VerifyLeader called: %v, want %v", f.verified, tc.wantVerify)
			}
		})
	}
}
