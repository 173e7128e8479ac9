package retry_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/internal/retry"
)

// Each pause lies in [d/2, d] of its step; the steps double from First up
// to Limit, and Reset starts them over.
func TestBackoffDoublesWithJitterUpToLimit(t *testing.T) {
	b := retry.Backoff{First: 100 * time.Millisecond, Limit: 700 * time.Millisecond}
	steps := []time.Duration{100, 200, 400, 700, 700}
	for round := range 2 {
		for i, step := range steps {
			step *= time.Millisecond
			if d := b.Pause(); d < step/2 || d > step {
				t.Fatalf("round %d pause %d: %s, want within [%s, %s]", round, i, d, step/2, step)
			}
		}
		b.Reset()
	}
}

func TestSleepEndsWithItsContext(t *testing.T) {
	if err := retry.Sleep(context.Background(), time.Millisecond); err != nil {
		t.Fatalf("Sleep: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	start := time.Now()
	if err := retry.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on a cancelled context: %v, want context.Canceled", err)
	}
	if took := time.Since(start); took > time.Second {
		t.Fatalf("Sleep on a cancelled context took %s", took)
	}
}
