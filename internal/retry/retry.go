// Package retry paces retries against a cluster: a jittered, doubling
// backoff and a sleep that ends with its context. The client, the node
// (joining, learning its DNS floor) and the enactors share it.
package retry

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff is the pause between retries against a cluster: jittered, so
// that clients (and enactors, and shards) that failed together do not
// retry together against a cluster that is recovering, and doubling from
// First up to Limit. The client paces its own retries with it; programs
// that retry on their own (enactors) use it too.
type Backoff struct {
	First, Limit time.Duration
	next         time.Duration // zero: start at First
}

// Pause returns the next pause, in [d/2, d] of the current step d, and
// doubles the step up to Limit.
func (b *Backoff) Pause() time.Duration {
	if b.next == 0 {
		b.next = b.First
	}
	d := b.next
	b.next = min(2*b.next, b.Limit)
	return d/2 + rand.N(d/2+1)
}

// Reset starts the pauses over at First, after a success.
func (b *Backoff) Reset() { b.next = 0 }

// Sleep waits for d or until ctx ends, and then returns ctx's error.
func Sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
