package client

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/dnsplan/dnsplan/internal/retry"
	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// HoldLease acquires the named lease for holder and runs fn while it holds
// it, renewing every ttl/3. fn's context ends the moment the lease may be
// lost: a renewal is refused, or no renewal succeeded before the lease's
// expiry as seen from here (measured from when the last successful acquire
// or renew was sent, so the local view never outlives the cluster's).
// fn must then stop acting and return; HoldLease waits for it, then tries
// to acquire the lease again. If fn returns on its own, the lease is
// released and acquired again. When ctx ends, HoldLease releases a held
// lease and returns ctx's error.
//
// This keeps a holder from acting long after it lost its lease, but safety
// does not rest on it: the cluster refuses any write with a superseded
// token. A paused process may still send a write with an old token; it is
// fenced there.
func (c *Client) HoldLease(ctx context.Context, name, holder string, ttl time.Duration, fn func(ctx context.Context, lease *pb.Lease)) error {
	log := c.opts.logger.With("lease", name, "holder", holder)
	interval := ttl / 3
	for {
		sent := time.Now()
		lease, err := c.AcquireLease(ctx, &pb.AcquireLeaseRequest{Name: name, Holder: holder, Ttl: durationpb.New(ttl)})
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			if status.Code(err) != codes.FailedPrecondition {
				log.Warn("acquiring lease", "err", err)
			}
			// Standing by: try again a little after a renewal period, with
			// jitter so standbys do not move in lockstep.
			if err := retry.Sleep(ctx, interval+time.Duration(rand.Int64N(int64(interval)+1))); err != nil {
				return err
			}
			continue
		}
		log.Info("lease acquired", "token", lease.GetToken())
		c.runHolding(ctx, lease, sent, ttl, interval, fn)
		c.release(lease)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// runHolding runs fn and renews the lease until a renewal fails, fn
// returns, or ctx ends.
func (c *Client) runHolding(ctx context.Context, lease *pb.Lease, sent time.Time, ttl, interval time.Duration, fn func(context.Context, *pb.Lease)) {
	log := c.opts.logger.With("lease", lease.GetName(), "holder", lease.GetHolder(), "token", lease.GetToken())
	work, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(work, lease)
	}()
	defer func() { stop(); <-done }()
	localExpiry := sent.Add(ttl)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-done:
			log.Info("holder finished; releasing lease")
			return
		case <-tick.C:
		}
		sent := time.Now()
		// A renewal that cannot succeed before the local expiry is a lost
		// lease: stop acting then, not after retries.
		rctx, cancel := context.WithDeadline(ctx, localExpiry)
		_, err := c.RenewLease(rctx, &pb.RenewLeaseRequest{Name: lease.GetName(), Holder: lease.GetHolder(), Token: lease.GetToken()})
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				log.Warn("lease lost; stopping", "err", err)
			}
			return
		}
		localExpiry = sent.Add(ttl)
	}
}

// release gives the lease up so a standby need not wait for it to expire.
// It is best effort: a lease already lost is refused, which is fine.
func (c *Client) release(lease *pb.Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.callTimeout)
	defer cancel()
	_, err := c.ReleaseLease(ctx, &pb.ReleaseLeaseRequest{Name: lease.GetName(), Holder: lease.GetHolder(), Token: lease.GetToken()})
	if err != nil && status.Code(err) != codes.FailedPrecondition && !errors.Is(err, ErrClosed) {
		// Not fatal (the lease expires by itself), but a standby now waits
		// for its expiry instead of taking over at once.
		c.opts.logger.Warn("releasing lease failed; it expires by itself", "lease", lease.GetName(),
			"token", lease.GetToken(), "err", err)
	}
}
