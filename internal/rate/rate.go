// Package rate is a token bucket per key: how a node bounds the writes of
// each client and how its DNS server bounds the answers to each client
// prefix.
package rate

import (
	"sync"
	"time"
)

// maxKeys bounds the keys remembered; past it, those whose bucket has
// refilled completely are forgotten (forgetting them changes nothing).
const maxKeys = 10000

// Limiter holds, per key, up to Burst tokens, refilled at Rate a second;
// each event takes one.
type Limiter struct {
	rate  float64
	burst int
	// Now is the clock (time.Now); tests replace it.
	Now func() time.Time

	// mu guards buckets.
	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

// New returns a limiter of rate events a second per key, burst at once.
func New(rate float64, burst int) *Limiter {
	return &Limiter{rate: rate, burst: burst, Now: time.Now, buckets: map[string]*bucket{}}
}

// Rate and Burst are the limiter's settings.
func (l *Limiter) Rate() float64 { return l.rate }
func (l *Limiter) Burst() int    { return l.burst }

// Allow takes a token of key's bucket, if there is one.
func (l *Limiter) Allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.Now()
	b := l.buckets[key]
	if b == nil {
		if len(l.buckets) >= maxKeys {
			l.forgetIdle(now)
		}
		b = &bucket{tokens: float64(l.burst), at: now}
		l.buckets[key] = b
	}
	b.tokens = min(float64(l.burst), b.tokens+now.Sub(b.at).Seconds()*l.rate)
	b.at = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// Keys is how many keys the limiter remembers.
func (l *Limiter) Keys() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.buckets)
}

func (l *Limiter) forgetIdle(now time.Time) {
	full := time.Duration(float64(l.burst) / l.rate * float64(time.Second))
	for k, b := range l.buckets {
		if now.Sub(b.at) >= full {
			delete(l.buckets, k)
		}
	}
}
