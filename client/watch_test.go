package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/contract"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// A watch answered RESOURCE_EXHAUSTED (a message over a size limit) would
// get the same answer from the same point on every node: the watch
// returns it at once instead of reconnecting forever.
func TestWatchPlansStopsOnResourceExhausted(t *testing.T) {
	big := start(t, &fakeNode{id: "big", watchPlans: func(*pb.WatchPlansRequest, grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
		return status.Error(codes.ResourceExhausted, "grpc: received message larger than max")
	}})
	c := newClient(t, []string{big.addr})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	err := c.WatchPlans(ctx, 1, func(*pb.Plan) error { return nil })
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("err = %v, want RESOURCE_EXHAUSTED returned", err)
	}
	if n := big.calls.Load(); n != 1 {
		t.Errorf("node saw %d streams, want 1: no reconnecting on a permanent error", n)
	}
}

// A node refusing a watch because its cap of watch streams is reached
// (reason WATCH_LIMIT) is not a permanent answer: the watch moves on to
// another node.
func TestWatchPlansMovesOnFromWatchLimit(t *testing.T) {
	st, err := status.New(codes.ResourceExhausted, "too many watch streams").
		WithDetails(&errdetails.ErrorInfo{Reason: "WATCH_LIMIT", Domain: contract.ErrorDomain})
	if err != nil {
		t.Fatal(err)
	}
	full := start(t, &fakeNode{id: "full", watchPlans: func(*pb.WatchPlansRequest, grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
		return st.Err()
	}})
	ok := start(t, &fakeNode{id: "ok", watchPlans: func(req *pb.WatchPlansRequest, s grpc.ServerStreamingServer[pb.WatchPlansResponse]) error {
		return s.Send(&pb.WatchPlansResponse{Plan: &pb.Plan{Generation: 1}})
	}})
	c := newClient(t, []string{full.addr, ok.addr})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	errGot := errors.New("got it")
	err = c.WatchPlans(ctx, 1, func(*pb.Plan) error { return errGot })
	if !errors.Is(err, errGot) {
		t.Fatalf("err = %v, want the plan from the node with room", err)
	}
}
