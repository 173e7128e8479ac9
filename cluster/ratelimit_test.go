package cluster

import (
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
)

// A bucket holds burst writes, refills at rate, and is kept per client.
func TestWriteLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := newWriteLimiter(2, 3)
	l.now = func() time.Time { return now }
	for i := range 3 {
		if !l.allow("a") {
			t.Fatalf("write %d of the burst refused", i+1)
		}
	}
	if l.allow("a") {
		t.Fatal("a write past the burst allowed")
	}
	if !l.allow("b") {
		t.Fatal("another client shares the first one's bucket")
	}
	now = now.Add(500 * time.Millisecond) // one token back at 2/s
	if !l.allow("a") || l.allow("a") {
		t.Fatal("half a second at 2/s gives back exactly one write")
	}
	now = now.Add(time.Hour)
	for range 3 {
		if !l.allow("a") {
			t.Fatal("a refilled bucket refused its burst")
		}
	}
	if l.allow("a") {
		t.Fatal("a bucket refilled past its burst")
	}
}

// The clients remembered are bounded: idle, full buckets are forgotten.
func TestWriteLimiterForgetsIdleClients(t *testing.T) {
	now := time.Unix(0, 0)
	l := newWriteLimiter(1000, 1)
	l.now = func() time.Time { return now }
	for i := range maxBuckets {
		l.allow(string(rune('a'+i%26)) + string(rune(i)))
	}
	now = now.Add(time.Second)
	l.allow("new")
	if n := len(l.buckets); n > 1 {
		t.Fatalf("%d buckets remembered after every old one refilled", n)
	}
}

func TestRateLimitStatus(t *testing.T) {
	err := toStatus(fmt.Errorf("%w: client x", ErrRateLimited))
	if status.Code(err) != codes.ResourceExhausted || client.Reason(err) != contract.ReasonRateLimit {
		t.Fatalf("%v (reason %q), want RESOURCE_EXHAUSTED / RATE_LIMIT", err, client.Reason(err))
	}
}
