package main

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// loadResult is one load run: how many operations succeeded in how long,
// and the latency of each.
type loadResult struct {
	Clients  int
	OK       int
	Failed   int
	Elapsed  time.Duration
	P50, P99 time.Duration
	// FirstErr is the first failed operation's error, telling what failed.
	FirstErr string
}

// OpsPerSec is the rate of successful operations.
func (r loadResult) OpsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// opFunc does client c's i-th operation. It returns false when client c
// has no operation left (its share of the prepared work is done).
type opFunc func(ctx context.Context, c, i int) (more bool, err error)

// runLoad runs clients goroutines, each calling op in a loop, until the
// duration passes, maxOps operations were started in all, or every
// client ran out of work. The run stops by itself: each bound holds.
func runLoad(ctx context.Context, clients, maxOps int, duration time.Duration, op opFunc) loadResult {
	ctx, cancel := context.WithTimeout(ctx, duration)
	defer cancel()
	var started atomic.Int64
	lat := make([][]time.Duration, clients)
	failed := make([]int, clients)
	var firstErr sync.Once
	var r loadResult
	var wg sync.WaitGroup
	begin := time.Now()
	for c := range clients {
		wg.Add(1)
		// One goroutine per simulated client, ending with the run.
		go func() {
			defer wg.Done()
			for i := 0; ctx.Err() == nil && started.Add(1) <= int64(maxOps); i++ {
				t := time.Now()
				more, err := op(ctx, c, i)
				if !more {
					return
				}
				if err != nil {
					if ctx.Err() == nil {
						failed[c]++
						firstErr.Do(func() { r.FirstErr = err.Error() })
					}
					continue
				}
				lat[c] = append(lat[c], time.Since(t))
			}
		}()
	}
	wg.Wait()
	r.Clients, r.Elapsed = clients, time.Since(begin)
	var all []time.Duration
	for c := range clients {
		all = append(all, lat[c]...)
		r.Failed += failed[c]
	}
	r.OK = len(all)
	r.P50, r.P99 = percentile(all, 0.50), percentile(all, 0.99)
	return r
}

// percentile is the q-quantile of ds (nearest rank); it sorts ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(q*float64(len(ds))+0.5) - 1
	return ds[max(0, min(i, len(ds)-1))]
}

// failover is the outcome of the failover trials: for each, the time from
// SIGKILL of the leader to the first acknowledged write on a survivor.
type failover struct {
	Trials []time.Duration
}

// Median and Worst summarize the trials.
func (f failover) Median() time.Duration { return percentile(slices.Clone(f.Trials), 0.5) }
func (f failover) Worst() time.Duration  { return slices.Max(append([]time.Duration{0}, f.Trials...)) }
