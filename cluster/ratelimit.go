package cluster

import (
	"cmp"
	"errors"
	"sync"
	"time"
)

// ErrRateLimited: a client is over its write rate on this node. It
// becomes RESOURCE_EXHAUSTED with reason RATE_LIMIT; the write never
// reaches the log, and the client may retry after a pause.
var ErrRateLimited = errors.New("write rate limit")

// Write rate defaults (Config.WriteRate, WriteBurst): far above what a
// planner, an enactor or an operator needs, and far below what would let
// one client fill the log.
const (
	DefaultWriteRate  = 200
	DefaultWriteBurst = 400
	// maxBuckets bounds the clients remembered; past it, those idle for
	// a full burst's refill are forgotten.
	maxBuckets = 10000
)

// writeLimiter is a token bucket per client: each holds up to burst
// tokens, refilled at rate a second; a write takes one.
type writeLimiter struct {
	rate  float64
	burst int
	now   func() time.Time

	// mu guards buckets.
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newWriteLimiter(rate float64, burst int) *writeLimiter {
	return &writeLimiter{rate: cmp.Or(rate, DefaultWriteRate), burst: cmp.Or(burst, DefaultWriteBurst), now: time.Now, buckets: map[string]*bucket{}}
}

// allow takes a token of client's bucket, if there is one.
func (l *writeLimiter) allow(client string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b := l.buckets[client]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			l.forgetIdle(now)
		}
		b = &bucket{tokens: float64(l.burst), at: now}
		l.buckets[client] = b
	}
	b.tokens = min(float64(l.burst), b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// forgetIdle drops the buckets that have refilled completely: forgetting
// them changes nothing.
func (l *writeLimiter) forgetIdle(now time.Time) {
	full := time.Duration(float64(l.burst) / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.at) >= full {
			delete(l.buckets, k)
		}
	}
}
