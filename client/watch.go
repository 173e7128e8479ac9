package client

import (
	"context"
	"errors"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/dnsplan/dnsplan/contract"
	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// WatchPlans calls fn with every stored plan of generation from or later,
// in order, then with each new plan as it is committed. When the stream
// breaks it reconnects, to any node, and resumes after the last generation
// fn was given, so fn sees no gap and no plan twice. It returns when ctx
// ends (ctx.Err()), when fn returns an error (that error), or when a node
// answers with an error that reconnecting cannot cure (InvalidArgument,
// Unimplemented, ResourceExhausted for a message over a size limit, …),
// which it also logs at error level.
func (c *Client) WatchPlans(ctx context.Context, from uint64, fn func(*pb.Plan) error) error {
	next := from
	return c.watch(ctx, "plans", func(ctx context.Context, cc grpc.ClientConnInterface, progress func()) error {
		stream, err := pb.NewPlanServiceClient(cc).WatchPlans(ctx, &pb.WatchPlansRequest{FromGeneration: next})
		if err != nil {
			return err
		}
		for {
			m, err := stream.Recv()
			if err != nil {
				return err
			}
			p := m.GetPlan()
			if p == nil || p.GetGeneration() < next {
				continue // already given to fn before a reconnect
			}
			if err := fn(p); err != nil {
				return stopError{err}
			}
			next = p.GetGeneration() + 1
			progress()
		}
	})
}

// WatchApplied calls fn with every applied endpoint whose revision is
// fromRevision or later, then with each change. When the stream breaks it
// reconnects, to any node, and resumes without a gap or a repeat. It
// returns like WatchPlans.
//
// One apply can change several endpoints at the same revision (one log
// entry), so resuming at "last revision + 1" could lose the rest of a batch
// cut by the break. The watch instead resumes at the last revision seen and
// drops what fn already had: an endpoint is given to fn only with a
// revision newer than the last one fn got for it. This is gap-free as long
// as a node sends in non-decreasing revision order, which the resume rule
// of WatchAppliedRequest already requires of it.
func (c *Client) WatchApplied(ctx context.Context, fromRevision uint64, fn func(*pb.AppliedEndpoint) error) error {
	resume := fromRevision
	given := map[string]uint64{} // endpoint -> revision last given to fn
	return c.watch(ctx, "applied", func(ctx context.Context, cc grpc.ClientConnInterface, progress func()) error {
		stream, err := pb.NewEnactServiceClient(cc).WatchApplied(ctx, &pb.WatchAppliedRequest{FromRevision: resume})
		if err != nil {
			return err
		}
		for {
			m, err := stream.Recv()
			if err != nil {
				return err
			}
			e := m.GetEndpoint()
			if e == nil {
				continue
			}
			if rev, ok := given[e.GetEndpoint()]; ok && e.GetRevision() <= rev {
				continue
			}
			if err := fn(e); err != nil {
				return stopError{err}
			}
			given[e.GetEndpoint()] = e.GetRevision()
			resume = max(resume, e.GetRevision())
			progress()
		}
	})
}

// stopError marks the watch callback's own error, which ends the watch.
type stopError struct{ err error }

func (e stopError) Error() string { return e.err.Error() }

// watch runs session, one stream on one node, again and again until ctx
// ends, the callback fails, or a node gives a permanent error. session
// keeps its own resume point and calls progress after each delivered
// message, which resets the backoff and makes the node sticky.
func (c *Client) watch(ctx context.Context, what string, session func(ctx context.Context, cc grpc.ClientConnInterface, progress func()) error) error {
	addr := c.first()
	pace := retry.Backoff{First: c.opts.minBackoff, Limit: c.opts.maxBackoff}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		cc, err := c.conn(addr)
		if errors.Is(err, ErrClosed) {
			return err
		}
		if err != nil {
			// A learned hint that does not parse: drop it.
			bad := addr
			addr = c.next(bad, "")
			c.forget(bad)
			continue
		}
		var trailer metadata.MD
		// sctx is canceled when the session ends, so a stream abandoned
		// because fn failed releases its resources.
		sctx, cancel := context.WithCancel(ctx)
		err = session(sctx, hintConn{cc: cc, trailer: &trailer}, func() {
			pace.Reset()
			c.remember(addr)
		})
		cancel()
		var stop stopError
		switch {
		case errors.As(err, &stop):
			return stop.err
		case ctx.Err() != nil:
			return ctx.Err()
		case permanent(err):
			// Reconnecting would get the same answer from the same point,
			// forever and unseen; say so and hand it to the caller.
			c.log.Error("watch stopped: the cluster's answer cannot be cured by reconnecting",
				"watch", what, "addr", addr, "code", status.Code(err), "err", err)
			return err
		}
		failed := addr
		addr = c.next(failed, leaderHint(trailer))
		d := pace.Pause()
		c.log.Info("watch stream broke, reconnecting", "watch", what, "addr", failed,
			"next_addr", addr, "err", err, "pause", d)
		if err := retry.Sleep(ctx, d); err != nil {
			return err
		}
	}
}

// permanent reports whether a stream error is an answer that reconnecting
// would only repeat. RESOURCE_EXHAUSTED is one (a message over a size
// limit comes back from every node at the same resume point), except a
// node's cap of watch streams (reason WATCH_LIMIT), which another node,
// or the same one later, may not have reached. Everything else
// (Unavailable, a node shutting down, a stream the server ended, io.EOF)
// is worth a reconnect, since a watch is meant to run forever.
func permanent(err error) bool {
	if err == nil || errors.Is(err, io.EOF) {
		return false
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Unauthenticated:
		return true
	case codes.ResourceExhausted:
		return Reason(err) != contract.ReasonWatchLimit
	}
	return false
}
