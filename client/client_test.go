package client_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/client"
	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/loopback"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// fakeNode is a gRPC server whose answers each test scripts. Unset
// behaviours answer as a healthy node would.
type fakeNode struct {
	pb.UnimplementedClusterServiceServer
	pb.UnimplementedPlanServiceServer
	pb.UnimplementedEnactServiceServer

	id    string
	addr  string
	calls atomic.Int64 // unary calls and stream opens served

	status       func(ctx context.Context) error
	watchPlans   func(req *pb.WatchPlansRequest, s grpc.ServerStreamingServer[pb.WatchPlansResponse]) error
	watchApplied func(req *pb.WatchAppliedRequest, s grpc.ServerStreamingServer[pb.WatchAppliedResponse]) error
}

func (n *fakeNode) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	n.calls.Add(1)
	if n.status != nil {
		if err := n.status(ctx); err != nil {
			return nil, err
		}
	}
	return &pb.StatusResponse{NodeId: n.id}, nil
}

func (n *fakeNode) SubmitPlan(ctx context.Context, req *pb.SubmitPlanRequest) (*pb.SubmitPlanResponse, error) {
	n.calls.Add(1)
	if n.status != nil {
		if err := n.status(ctx); err != nil {
			return nil, err
		}
	}
	return &pb.SubmitPlanResponse{Generation: 7}, nil
}

func (n *fakeNode) WatchPlans(req *pb.WatchPlansRequest, s grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
	n.calls.Add(1)
	return n.watchPlans(req, s)
}

func (n *fakeNode) WatchApplied(req *pb.WatchAppliedRequest, s grpc.ServerStreamingServer[pb.WatchAppliedResponse]) error {
	n.calls.Add(1)
	return n.watchApplied(req, s)
}

// start serves n on a free loopback port until the test ends.
func start(t *testing.T, n *fakeNode) *fakeNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n.addr = lis.Addr().String()
	srv := grpc.NewServer()
	pb.RegisterClusterServiceServer(srv, n)
	pb.RegisterPlanServiceServer(srv, n)
	pb.RegisterEnactServiceServer(srv, n)
	go srv.Serve(lis) //nolint:errcheck // ends with Stop
	t.Cleanup(srv.Stop)
	return n
}

// unavailable answers like a node without a leader, naming hint (if any)
// as the leader in the trailer.
func unavailable(hint string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		if hint != "" {
			grpc.SetTrailer(ctx, metadata.Pairs(contract.LeaderTrailer, hint))
		}
		return status.Error(codes.Unavailable, "not the leader")
	}
}

// testLog sends a client's log to the test's log, shown when it fails.
type testLog struct{ t *testing.T }

func (w testLog) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(b), "\n"))
	return len(b), nil
}

func newClient(t *testing.T, addrs []string, opts ...client.Option) *client.Client {
	t.Helper()
	opts = append([]client.Option{
		client.WithLogger(slog.New(slog.NewTextHandler(testLog{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))),
		client.WithBackoff(5*time.Millisecond, 20*time.Millisecond),
		client.WithCallTimeout(2 * time.Second),
		client.WithRetryBudget(5 * time.Second),
	}, opts...)
	c, err := client.New(addrs, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestFailsOverToNextAddressAndSticks(t *testing.T) {
	follower := start(t, &fakeNode{id: "a", status: unavailable("")})
	leader := start(t, &fakeNode{id: "b"})
	// Nothing listens on a free port: the first address is dead.
	c := newClient(t, []string{loopback.FreeAddr(t), follower.addr, leader.addr})

	for range 3 {
		st, err := c.Status(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if st.GetNodeId() != "b" {
			t.Fatalf("answered by %q, want b", st.GetNodeId())
		}
	}
	// The first call walked the list; later ones went straight to b.
	if got := follower.calls.Load(); got != 1 {
		t.Errorf("follower got %d calls, want 1", got)
	}
	if got := leader.calls.Load(); got != 3 {
		t.Errorf("leader got %d calls, want 3", got)
	}
}

func TestFollowsLeaderHint(t *testing.T) {
	leader := start(t, &fakeNode{id: "leader"})
	// other would only be tried without the hint.
	other := start(t, &fakeNode{id: "other", status: unavailable("")})
	// An empty hint is no hint.
	empty := start(t, &fakeNode{id: "empty", status: unavailable("")})
	pointer := start(t, &fakeNode{id: "pointer", status: unavailable(leader.addr)})
	// The leader is not in the list the client starts with.
	c := newClient(t, []string{empty.addr, pointer.addr, other.addr})

	resp, err := c.SubmitPlan(t.Context(), &pb.SubmitPlanRequest{Plan: &pb.Plan{}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetGeneration() != 7 {
		t.Fatalf("generation %d, want 7", resp.GetGeneration())
	}
	if got := other.calls.Load(); got != 0 {
		t.Errorf("node after the hinting one got %d calls, want 0", got)
	}
	if got := leader.calls.Load(); got != 1 {
		t.Errorf("leader got %d calls, want 1", got)
	}
	if !slices.Contains(c.Addrs(), leader.addr) {
		t.Errorf("Addrs() = %v, want it to include the learned leader %s", c.Addrs(), leader.addr)
	}
}

func TestGivesUpAfterBudget(t *testing.T) {
	a := start(t, &fakeNode{id: "a", status: unavailable("")})
	// b names a leader that does not exist.
	b := start(t, &fakeNode{id: "b", status: unavailable(loopback.FreeAddr(t))})
	budget := time.Second
	c := newClient(t, []string{a.addr, b.addr}, client.WithRetryBudget(budget))

	began := time.Now()
	_, err := c.Status(t.Context())
	took := time.Since(began)
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("err = %v (code %v), want Unavailable", err, status.Code(err))
	}
	if !errors.Is(err, client.ErrBudgetExhausted) {
		t.Errorf("err = %v, want it to wrap ErrBudgetExhausted", err)
	}
	if took > budget+2*time.Second {
		t.Errorf("gave up after %v, budget %v", took, budget)
	}
	if a.calls.Load() < 2 || b.calls.Load() < 1 {
		t.Errorf("calls a=%d b=%d, want retries across both", a.calls.Load(), b.calls.Load())
	}
}

func TestContextEndsRetries(t *testing.T) {
	a := start(t, &fakeNode{id: "a", status: unavailable("")})
	c := newClient(t, []string{a.addr}, client.WithRetryBudget(time.Minute))
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	_, err := c.Status(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want it to wrap context.DeadlineExceeded", err)
	}
}

func TestBusinessErrorsAreNotRetried(t *testing.T) {
	for _, code := range []codes.Code{codes.InvalidArgument, codes.FailedPrecondition, codes.NotFound} {
		t.Run(code.String(), func(t *testing.T) {
			a := start(t, &fakeNode{id: "a", status: func(context.Context) error {
				return status.Error(code, "no")
			}})
			b := start(t, &fakeNode{id: "b"})
			c := newClient(t, []string{a.addr, b.addr})
			_, err := c.SubmitPlan(t.Context(), &pb.SubmitPlanRequest{})
			if status.Code(err) != code {
				t.Fatalf("err = %v, want code %v", err, code)
			}
			if a.calls.Load() != 1 || b.calls.Load() != 0 {
				t.Errorf("calls a=%d b=%d, want 1 and 0", a.calls.Load(), b.calls.Load())
			}
		})
	}
}

func TestPerCallDeadlineMovesOn(t *testing.T) {
	hung := start(t, &fakeNode{id: "hung", status: func(ctx context.Context) error {
		<-ctx.Done()
		return ctx.Err()
	}})
	ok := start(t, &fakeNode{id: "ok"})
	c := newClient(t, []string{hung.addr, ok.addr}, client.WithCallTimeout(100*time.Millisecond))
	st, err := c.Status(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if st.GetNodeId() != "ok" {
		t.Fatalf("answered by %q, want ok", st.GetNodeId())
	}

	// The caller's own deadline is final: no other node is tried.
	c = newClient(t, []string{hung.addr, ok.addr})
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	before := ok.calls.Load()
	_, err = c.Status(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("err = %v (code %v), want the caller's deadline", err, status.Code(err))
	}
	if ok.calls.Load() != before {
		t.Errorf("the next node was tried after the caller's deadline")
	}
}

func TestStatusOfDoesNotFailOver(t *testing.T) {
	ok := start(t, &fakeNode{id: "ok"})
	dead := loopback.FreeAddr(t) // nothing listens there
	c := newClient(t, []string{dead, ok.addr})
	if _, err := c.StatusOf(t.Context(), dead); status.Code(err) != codes.Unavailable {
		t.Fatalf("StatusOf(dead) err = %v, want Unavailable", err)
	}
	st, err := c.StatusOf(t.Context(), ok.addr)
	if err != nil || st.GetNodeId() != "ok" {
		t.Fatalf("StatusOf(ok) = %v, %v", st, err)
	}
}

func TestNewAndClose(t *testing.T) {
	if _, err := client.New(nil); !errors.Is(err, client.ErrNoAddresses) {
		t.Errorf("New(nil) err = %v, want ErrNoAddresses", err)
	}
	c, err := client.New([]string{loopback.FreeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Status(t.Context()); !errors.Is(err, client.ErrClosed) {
		t.Errorf("Status after Close err = %v, want ErrClosed", err)
	}
}

// planLog is the plans every fake node serves: generations 1..n.
func planLog(n uint64) []*pb.Plan {
	var out []*pb.Plan
	for g := uint64(1); g <= n; g++ {
		out = append(out, &pb.Plan{Generation: g, PlannerId: "p"})
	}
	return out
}

func TestWatchPlansResumesOnAnotherNodeWithoutGapOrRepeat(t *testing.T) {
	plans := planLog(6)
	var mu sync.Mutex
	var froms []uint64 // FromGeneration of every stream opened, in order
	record := func(from uint64) {
		mu.Lock()
		froms = append(froms, from)
		mu.Unlock()
	}
	// a sends up to generation 3, then its stream breaks.
	a := start(t, &fakeNode{id: "a", watchPlans: func(req *pb.WatchPlansRequest, s grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
		record(req.GetFromGeneration())
		for _, p := range plans {
			if p.Generation >= req.GetFromGeneration() && p.Generation <= 3 {
				if err := s.Send(&pb.WatchPlansResponse{Plan: p}); err != nil {
					return err
				}
			}
		}
		return status.Error(codes.Unavailable, "node shutting down")
	}})
	// b is sloppy on purpose: it also resends the generation before the
	// one asked for, which the client must drop. Then it stays open.
	b := start(t, &fakeNode{id: "b", watchPlans: func(req *pb.WatchPlansRequest, s grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
		record(req.GetFromGeneration())
		for _, p := range plans {
			if p.Generation+1 >= req.GetFromGeneration() {
				if err := s.Send(&pb.WatchPlansResponse{Plan: p}); err != nil {
					return err
				}
			}
		}
		<-s.Context().Done()
		return nil
	}})
	c := newClient(t, []string{a.addr, b.addr})

	errDone := errors.New("seen enough")
	var got []uint64
	err := c.WatchPlans(t.Context(), 1, func(p *pb.Plan) error {
		got = append(got, p.GetGeneration())
		if p.GetGeneration() == 6 {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("WatchPlans err = %v, want the callback's error", err)
	}
	if want := []uint64{1, 2, 3, 4, 5, 6}; !slices.Equal(got, want) {
		t.Errorf("generations %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []uint64{1, 4}; !slices.Equal(froms, want) {
		t.Errorf("streams opened from %v, want %v", froms, want)
	}
}

func TestWatchPlansStopsOnPermanentErrorAndContext(t *testing.T) {
	bad := start(t, &fakeNode{id: "bad", watchPlans: func(*pb.WatchPlansRequest, grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
		return status.Error(codes.InvalidArgument, "no")
	}})
	c := newClient(t, []string{bad.addr})
	err := c.WatchPlans(t.Context(), 0, func(*pb.Plan) error { return nil })
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("err = %v, want InvalidArgument", err)
	}

	down := start(t, &fakeNode{id: "down", watchPlans: func(*pb.WatchPlansRequest, grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
		return status.Error(codes.Unavailable, "no leader")
	}})
	c = newClient(t, []string{down.addr})
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	err = c.WatchPlans(ctx, 0, func(*pb.Plan) error { return nil })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want context.DeadlineExceeded", err)
	}
	if down.calls.Load() < 2 {
		t.Errorf("down node saw %d streams, want reconnects", down.calls.Load())
	}
}

func TestWatchAppliedResumesMidBatch(t *testing.T) {
	// ep1 and ep2 changed in one apply (revision 5); ep3 later (7).
	ep := func(name string, rev uint64) *pb.AppliedEndpoint {
		return &pb.AppliedEndpoint{Endpoint: name, Revision: rev, Generation: rev}
	}
	log := []*pb.AppliedEndpoint{ep("ep0.", 3), ep("ep1.", 5), ep("ep2.", 5), ep("ep3.", 7)}
	send := func(req *pb.WatchAppliedRequest, s grpc.ServerStreamingServer[pb.WatchAppliedResponse], upTo int) error {
		for _, e := range log[:upTo] {
			if e.Revision >= req.GetFromRevision() {
				if err := s.Send(&pb.WatchAppliedResponse{Endpoint: e}); err != nil {
					return err
				}
			}
		}
		return nil
	}
	var froms []uint64
	var mu sync.Mutex
	// a breaks in the middle of revision 5.
	a := start(t, &fakeNode{id: "a", watchApplied: func(req *pb.WatchAppliedRequest, s grpc.ServerStreamingServer[pb.WatchAppliedResponse]) error {
		mu.Lock()
		froms = append(froms, req.GetFromRevision())
		mu.Unlock()
		if err := send(req, s, 2); err != nil {
			return err
		}
		return status.Error(codes.Unavailable, "gone")
	}})
	b := start(t, &fakeNode{id: "b", watchApplied: func(req *pb.WatchAppliedRequest, s grpc.ServerStreamingServer[pb.WatchAppliedResponse]) error {
		mu.Lock()
		froms = append(froms, req.GetFromRevision())
		mu.Unlock()
		if err := send(req, s, len(log)); err != nil {
			return err
		}
		<-s.Context().Done()
		return nil
	}})
	c := newClient(t, []string{a.addr, b.addr})

	errDone := errors.New("seen enough")
	var got []string
	err := c.WatchApplied(t.Context(), 0, func(e *pb.AppliedEndpoint) error {
		got = append(got, e.GetEndpoint())
		if e.GetEndpoint() == "ep3." {
			return errDone
		}
		return nil
	})
	if !errors.Is(err, errDone) {
		t.Fatalf("WatchApplied err = %v", err)
	}
	if want := []string{"ep0.", "ep1.", "ep2.", "ep3."}; !slices.Equal(got, want) {
		t.Errorf("endpoints %v, want %v", got, want)
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []uint64{0, 5}; !slices.Equal(froms, want) {
		t.Errorf("streams opened from %v, want %v", froms, want)
	}
}
