package client_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/cluster"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// oneNode starts a real single-node cluster and returns its gRPC address.
func oneNode(t *testing.T) (*cluster.Node, string) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	raftLis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n, err := cluster.Start(cluster.Config{
		ID: "n1", DataDir: filepath.Join(t.TempDir(), "n1"),
		RaftListener: raftLis, GRPCListener: lis,
		HeartbeatTimeout: 200 * time.Millisecond, ElectionTimeout: 200 * time.Millisecond, LeaderLeaseTimeout: 100 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), RaftLogOutput: io.Discard,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Close() })
	return n, lis.Addr().String()
}

func eventually(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Two holders compete: one works at a time; when it stops, it releases the
// lease and the other takes over well before the TTL.
func TestHoldLeaseHandsOverOnRelease(t *testing.T) {
	_, addr := oneNode(t)
	c, err := client.New([]string{addr}, client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	eventually(t, 5*time.Second, "a holds", func() bool { return tokens[0].Load() != 0 })
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
	eventually(t, 5*time.Second, "b takes over", func() bool { return tokens[1].Load() != 0 })
	if took := time.Since(start); took >= ttl {
		t.Fatalf("takeover after release took %s, not less than the TTL", took)
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
	n, addr := oneNode(t)
	c, err := client.New([]string{addr}, client.WithLogger(slog.New(slog.NewTextHandler(io.Discard, nil))))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
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
	n.Close()
	select {
	case at := <-stopped:
		if at.Sub(killed) > ttl+time.Second {
			t.Fatalf("holder kept acting %s after the cluster went away (ttl %s)", at.Sub(killed), ttl)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("holder never stopped acting")
	}
}
