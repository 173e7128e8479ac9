package client_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/cluster/clustertest"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// Two holders compete: one works at a time; when it stops, it releases the
// lease and the other takes over well before the TTL.
func TestHoldLeaseHandsOverOnRelease(t *testing.T) {
	c := clustertest.Start(t, clustertest.Options{Nodes: 1}).Client()
	const ttl = 3 * time.Second
	var holding atomic.Int32
	var maxHolding atomic.Int32
	var tokens [2]atomic.Uint64
	run := func(ctx context.Context, i int) {
		_ = c.HoldLease(ctx, "enactor/0", []string{"a", "b"}[i], ttl, func(ctx context.Context, l *pb.Lease) {
			tokens[i].Store(l.Token)
			n := holding.Add(1)
			if n > maxHolding.Load() {
				maxHolding.Store(n)
			}
			<-ctx.Done()
			holding.Add(-1)
		})
	}
	ctxA, stopA := context.WithCancel(context.Background())
	doneA := make(chan struct{})
	go func() { defer close(doneA); run(ctxA, 0) }()
	clustertest.WaitFor(t, 5*time.Second, "a holds", func() bool { return tokens[0].Load() != 0 })
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	go run(ctxB, 1)
	// b stands by through several renewals of a's lease.
	time.Sleep(ttl / 2)
	if tokens[1].Load() != 0 {
		t.Fatal("b acquired a lease a holds")
	}
	start := time.Now()
	stopA()
	<-doneA
	clustertest.WaitFor(t, 5*time.Second, "b takes over", func() bool { return tokens[1].Load() != 0 })
	if took := time.Since(start); took >= ttl {
		// Say whether a's release was applied (b was slow to ask again)
		// or not (b waited for the expiry).
		var seen []string
		if h, err := c.ListHistory(context.Background(), &pb.ListHistoryRequest{}); err == nil {
			for _, ev := range h.GetEvents() {
				if ev.GetLeaseName() == "enactor/0" {
					seen = append(seen, fmt.Sprintf("%s %s by %s token %d: %s %s", ev.GetTime().AsTime().Format("15:04:05.000"),
						ev.GetKind(), ev.GetActor(), ev.GetToken(), ev.GetOutcome(), ev.GetReason()))
				}
			}
		}
		t.Fatalf("takeover after release took %s, not less than the TTL; the lease's history:\n%s", took, strings.Join(seen, "\n"))
	}
	if tokens[1].Load() <= tokens[0].Load() {
		t.Fatalf("b's token %d not above a's %d", tokens[1].Load(), tokens[0].Load())
	}
	if maxHolding.Load() > 1 {
		t.Fatal("both holders worked at once")
	}
}

// When the cluster disappears, the holder stops acting by its local expiry.
func TestHoldLeaseStopsWhenRenewalsFail(t *testing.T) {
	tc := clustertest.Start(t, clustertest.Options{Nodes: 1})
	c := tc.Client()
	const ttl = 900 * time.Millisecond
	acquired := make(chan struct{})
	stopped := make(chan time.Time, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.HoldLease(ctx, "planner", "p1", ttl, func(ctx context.Context, _ *pb.Lease) {
		close(acquired)
		<-ctx.Done()
		stopped <- time.Now()
	})
	<-acquired
	killed := time.Now()
	tc.Stop(0)
	select {
	case at := <-stopped:
		if at.Sub(killed) > ttl+time.Second {
			t.Fatalf("holder kept acting %s after the cluster went away (ttl %s)", at.Sub(killed), ttl)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("holder never stopped acting")
	}
}
