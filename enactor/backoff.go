package enactor

import (
	"context"
	"math/rand/v2"
	"time"
)

// backoff is a jittered, doubling pause between retries, so enactors (and
// shards) that failed together do not retry together against a cluster
// that is recovering.
type backoff struct {
	first, limit time.Duration
	next         time.Duration // zero: start at first
}

// pause returns the next pause, in [d/2, d] of the current step, and
// doubles the step up to limit.
func (b *backoff) pause() time.Duration {
	if b.next == 0 {
		b.next = b.first
	}
	d := b.next
	b.next = min(2*b.next, b.limit)
	return d/2 + rand.N(d/2+1)
}

// reset starts the pauses over after a success.
func (b *backoff) reset() { b.next = 0 }

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
