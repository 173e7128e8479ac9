package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// neverFuture is a Raft future nobody answers: one still queued for the
// main loop when Raft shut down.
type neverFuture struct{ block chan struct{} }

func (f neverFuture) Error() error { <-f.block; return nil }

// A node closing gives up on a Raft future Raft will never answer, so
// that Close, which waits for the node's loops, cannot wait forever on a
// loop waiting on one (a leader's barrier enqueued just before Close
// once held a test's cleanup for 17 minutes).
func TestAwaitEndsWhenTheNodeCloses(t *testing.T) {
	n := &Node{closing: make(chan struct{})}
	f := neverFuture{block: make(chan struct{})}
	defer close(f.block)
	got := make(chan error, 1)
	go func() { got <- n.await(f) }()
	select {
	case err := <-got:
		t.Fatalf("await returned %v before the node closed", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(n.closing)
	select {
	case err := <-got:
		if !errors.Is(err, raft.ErrRaftShutdown) {
			t.Fatalf("await after close: %v, want %v", err, raft.ErrRaftShutdown)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("await still waiting on an unanswered future after the node closed")
	}
}
