package rate

import (
	"testing"
	"time"
)

// A bucket holds burst writes, refills at rate, and is kept per client.
func TestLimiter(t *testing.T) {
	now := time.Unix(0, 0)
	l := New(2, 3)
	l.Now = func() time.Time { return now }
	for i := range 3 {
		if !l.Allow("a") {
			t.Fatalf("write %d of the burst refused", i+1)
		}
	}
	if l.Allow("a") {
		t.Fatal("a write past the burst allowed")
	}
	if !l.Allow("b") {
		t.Fatal("another client shares the first one's bucket")
	}
	now = now.Add(500 * time.Millisecond) // one token back at 2/s
	if !l.Allow("a") || l.Allow("a") {
		t.Fatal("half a second at 2/s gives back exactly one write")
	}
	now = now.Add(time.Hour)
	for range 3 {
		if !l.Allow("a") {
			t.Fatal("a refilled bucket refused its burst")
		}
	}
	if l.Allow("a") {
		t.Fatal("a bucket refilled past its burst")
	}
}

// The clients remembered are bounded: idle, full buckets are forgotten.
func TestLimiterForgetsIdleKeys(t *testing.T) {
	now := time.Unix(0, 0)
	l := New(1000, 1)
	l.Now = func() time.Time { return now }
	for i := range maxKeys {
		l.Allow(string(rune('a'+i%26)) + string(rune(i)))
	}
	now = now.Add(time.Second)
	l.Allow("new")
	if n := l.Keys(); n > 1 {
		t.Fatalf("%d buckets remembered after every old one refilled", n)
	}
}
