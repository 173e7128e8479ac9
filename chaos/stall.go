package chaos

import (
	"context"
	"crypto/tls"
	"strings"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	pb "github.com/dnsplan/dnsplan/proto/dnsplan/v1"
)

// stallWindow is the bare watcher's receive window, gRPC's smallest: a
// client that stops reading fills it, and then the node's send buffer,
// after a few plans.
const stallWindow = 64 << 10

// bareWatcher is a client of the raw API that opens a plan watch and an
// applied-records watch from the beginning and does not read them: a
// process paused or stuck with its streams open. Its small window makes
// the node's sends block after a few hundred KB, as they would behind any
// client that stops reading.
type bareWatcher struct {
	cc     *grpc.ClientConn
	cancel context.CancelFunc
	ctx    context.Context
	plans  pb.PlanService_WatchPlansClient
	apply  pb.EnactService_WatchAppliedClient
	wg     sync.WaitGroup
}

// openBareWatcher opens both streams on the node at addr, over TLS with
// tlsCfg if set (a reader's certificate), else in plaintext.
func openBareWatcher(addr string, tlsCfg *tls.Config) (*bareWatcher, error) {
	creds := insecure.NewCredentials()
	if tlsCfg != nil {
		creds = credentials.NewTLS(tlsCfg)
	}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithInitialWindowSize(stallWindow),
		grpc.WithInitialConnWindowSize(stallWindow))
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	w := &bareWatcher{cc: cc, cancel: cancel, ctx: ctx}
	if w.plans, err = pb.NewPlanServiceClient(cc).WatchPlans(ctx, &pb.WatchPlansRequest{FromGeneration: 1}); err == nil {
		w.apply, err = pb.NewEnactServiceClient(cc).WatchApplied(ctx, &pb.WatchAppliedRequest{})
	}
	if err != nil {
		w.close()
		return nil, err
	}
	return w, nil
}

// resume reads both streams again, until they end or the watcher is
// closed.
func (w *bareWatcher) resume() {
	w.wg.Go(func() {
		for {
			if _, err := w.plans.Recv(); err != nil {
				return
			}
		}
	})
	w.wg.Go(func() {
		for {
			if _, err := w.apply.Recv(); err != nil {
				return
			}
		}
	})
}

// close drops the watcher's connection, as a process that dies does.
func (w *bareWatcher) close() {
	w.cancel()
	w.cc.Close()
	w.wg.Wait()
}

// watchStall is an enactor client's plan-watch valve: while stalled, the
// enactor's plan stream is not read (RecvMsg waits), as when the goroutine
// that reads it is stuck; everything else the client does goes on. It
// also knows which node serves the current plan watch.
type watchStall struct {
	// mu guards everything below: the client's watch goroutine and fault
	// injection use it.
	mu      sync.Mutex
	stalled chan struct{} // non-nil while stalled; closed when it ends
	cancel  context.CancelFunc
	addr    string // the node serving the current plan watch
}

// option is the client option that puts the valve on the plan watch.
func (w *watchStall) option() grpc.DialOption {
	return grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
		if !strings.HasSuffix(method, "/WatchPlans") {
			return streamer(ctx, desc, cc, method, opts...)
		}
		sctx, cancel := context.WithCancel(ctx)
		cs, err := streamer(sctx, desc, cc, method, opts...)
		if err != nil {
			cancel()
			return nil, err
		}
		w.mu.Lock()
		w.addr, w.cancel = cc.Target(), cancel
		w.mu.Unlock()
		return &stalledStream{ClientStream: cs, w: w, ctx: sctx, cancel: cancel}, nil
	})
}

// watchAddr is the address of the node serving the plan watch, or "".
func (w *watchStall) watchAddr() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.addr
}

// stall stops the plan watch being read.
func (w *watchStall) stall() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.stalled == nil {
		w.stalled = make(chan struct{})
	}
}

// resume lets the plan watch be read again; with die, the stream is
// dropped first, as a dying process's connection is, and the enactor's
// watch reconnects.
func (w *watchStall) resume(die bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if die && w.cancel != nil {
		w.cancel()
	}
	if w.stalled != nil {
		close(w.stalled)
		w.stalled = nil
	}
}

type stalledStream struct {
	grpc.ClientStream
	w      *watchStall
	ctx    context.Context
	cancel context.CancelFunc
}

func (s *stalledStream) RecvMsg(m any) error {
	s.w.mu.Lock()
	stalled := s.w.stalled
	s.w.mu.Unlock()
	if stalled != nil {
		select {
		case <-stalled:
		case <-s.ctx.Done():
		}
	}
	if s.ctx.Err() != nil {
		s.cancel()
		// A dropped stream: the client reconnects, as after any break.
		return status.Error(codes.Unavailable, "chaos: stalled plan watch dropped")
	}
	err := s.ClientStream.RecvMsg(m)
	if err != nil {
		s.cancel()
	}
	return err
}
